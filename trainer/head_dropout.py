"""Multi-sample dropout on the head (``--head-dropout-samples K``; Inoue 2019, "Multi-Sample Dropout for
Accelerated Training and Better Generalization").

The dropout in front of the output layer draws K masks instead of one; the head scores
each of the K copies and the training loss is the mean of the K losses. The encoder runs
once, so a step costs little more, while the head sees K noisy views of every row per
step. At evaluation and inference the dropout is off, so the model is one plain pass: the
module swap happens in training only, the saved checkpoint (dropout has no weights) and
the exported graph are the same as without it.

How the K samples travel: ``MultiSampleDropout`` stacks them along the batch axis
(``K * batch`` rows), the head scores them like any batch, and the Trainer's
``compute_loss`` (``hf_trainer``) splits the logits back into K groups of the batch's rows.
That works for any head after the dropout, which is why the dropout must be the one
module in front of the output layer: the model's own top-level ``dropout`` (BERT, ALBERT,
DistilBERT, and mlb's mean and label-token heads). Heads that apply one dropout module
twice (RoBERTa's classification head) are refused.
"""

from __future__ import annotations

from typing import Any

from mlbert.errors import UsageError


def multi_sample_dropout_class():
    """``MultiSampleDropout`` (defined on first use so that torch is imported only for training)."""
    import torch
    from torch import nn

    class MultiSampleDropout(nn.Dropout):
        """Dropout that returns ``samples`` independently masked copies of its input, stacked on the batch axis,
        when training; one plain pass (identity) otherwise."""

        def __init__(self, p: float, samples: int) -> None:
            super().__init__(p)
            self.samples = samples

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            if not self.training or self.samples <= 1:
                return super().forward(x)
            return torch.cat([nn.functional.dropout(x, self.p, True) for _ in range(self.samples)], dim=0)

    return MultiSampleDropout


def install(model: Any, samples: int) -> None:
    """Replace the model's head dropout with a ``samples``-mask one (no-op for 1)."""
    from torch import nn

    if samples <= 1:
        return
    dropout = getattr(model, "dropout", None)
    if type(dropout) is not nn.Dropout:
        raise UsageError(
            f"--head-dropout-samples: {type(model).__name__} has no single dropout in front of its output layer "
            "(supported: BERT-like heads, --pooling mean and --label-input)"
        )
    model.dropout = multi_sample_dropout_class()(dropout.p, samples)


def mean_sample_loss(logits: Any, labels: Any, samples: int, loss_of: Any) -> Any:
    """The mean over the K samples of ``loss_of(logits of sample k, labels)``; ``logits`` is (K * batch, labels)."""
    rows = labels.shape[0]
    if samples <= 1 or logits.shape[0] == rows:
        return loss_of(logits, labels)
    if logits.shape[0] != samples * rows:
        raise RuntimeError(f"multi-sample dropout: {logits.shape[0]} rows of logits for {samples} x {rows}")
    return sum(loss_of(part, labels) for part in logits.split(rows, dim=0)) / samples
