"""Multi-label training losses over logits: BCE, the asymmetric loss, and the label-correlation term.

Every loss here is a mean over the batch's (row, label) cells, or rows for the pairwise
term, so switching losses keeps the gradient scale, the learning rate and gradient
clipping in the same range as BCE's.

* ``bce``: binary cross-entropy with logits, optional per-label ``pos_weight``.
* ``asl``: the asymmetric loss of Ridnik et al. 2021 ("Asymmetric Loss For Multi-Label
  Classification", ICCV): focal down-weighting with separate exponents for positives
  and negatives, and a probability margin (``clip``) that zeroes the loss of easy
  negatives. With ``gamma_neg == gamma_pos`` and ``clip == 0`` it is the focal loss of
  Lin et al. 2017 (without its alpha).
* the label-correlation-aware (LCA) term of SpanEmo (Alhuzali and Ananiadou 2021, EACL):
  for each row, the mean over (positive p, negative q) label pairs of
  ``exp(sigmoid(s_q) - sigmoid(s_p))``, which rewards ranking every present emotion above
  every absent one. SpanEmo adds it to BCE as ``(1 - alpha) * BCE + alpha * LCA``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

LOSSES = ("bce", "asl")


@dataclass(frozen=True)
class LossSettings:
    """What ``multilabel_loss`` computes: the base loss, its parameters, and the LCA weight."""

    loss: str = "bce"
    asl_gamma_neg: float = 4.0
    asl_gamma_pos: float = 1.0
    asl_clip: float = 0.05
    lca_weight: float = 0.0


def bce_loss(logits: Any, labels: Any, pos_weight: Optional[Any] = None) -> Any:
    """Mean binary cross-entropy with logits; ``pos_weight`` (L,) scales the positive term."""
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)


def asymmetric_loss(logits: Any, labels: Any, gamma_neg: float, gamma_pos: float, clip: float,
                    eps: float = 1e-8) -> Any:
    """Ridnik et al.'s asymmetric loss, mean over cells.

    Positives: ``-(1 - p)^gamma_pos * log(p)``. Negatives, with the shifted probability
    ``p_m = max(p - clip, 0)``: ``-p_m^gamma_neg * log(1 - p_m)``; a negative below
    ``clip`` costs nothing. The focusing weights keep their gradient, as in the paper's
    derivation.
    """
    import torch

    p = torch.sigmoid(logits)
    p_neg = (p - clip).clamp(min=0.0) if clip > 0 else p
    log_pos = torch.log(p.clamp(min=eps))
    log_neg = torch.log((1.0 - p_neg).clamp(min=eps))
    positive = labels * log_pos
    negative = (1.0 - labels) * log_neg
    if gamma_pos:
        positive = positive * torch.pow(1.0 - p, gamma_pos)
    if gamma_neg:
        negative = negative * torch.pow(p_neg, gamma_neg)
    return -(positive + negative).mean()


def label_correlation_loss(logits: Any, labels: Any) -> Any:
    """SpanEmo's LCA term, mean over rows; a row without positive (or negative) labels adds 0."""
    import torch

    p = torch.sigmoid(logits)
    positive = labels > 0.5
    negative = ~positive
    # diff[i, a, b] = p[i, b] - p[i, a]: a negative label b scored above a positive label a costs most.
    diff = p.unsqueeze(1) - p.unsqueeze(2)
    pairs = positive.unsqueeze(2) & negative.unsqueeze(1)
    summed = (torch.exp(diff) * pairs).sum(dim=(1, 2))
    count = pairs.sum(dim=(1, 2))
    per_row = torch.where(count > 0, summed / count.clamp(min=1), torch.zeros_like(summed))
    return per_row.mean()


def multilabel_loss(logits: Any, labels: Any, settings: LossSettings, pos_weight: Optional[Any] = None) -> Any:
    """The training loss ``settings`` describe, in fp32 whatever the logits' precision."""
    logits = logits.float()
    labels = labels.float()
    if settings.loss == "asl":
        base = asymmetric_loss(logits, labels, settings.asl_gamma_neg, settings.asl_gamma_pos, settings.asl_clip)
    else:
        base = bce_loss(logits, labels, pos_weight)
    if settings.lca_weight > 0:
        alpha = settings.lca_weight
        return (1.0 - alpha) * base + alpha * label_correlation_loss(logits, labels)
    return base
