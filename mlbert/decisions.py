"""The one decision rule: a label is on when its probability is >= its threshold.

mlb-batch's records, mlb-eval's and mlb-train's metrics, the exporter's accuracy gate and
the threshold tuner all decide through ``decide``, in float64, so a probability that sits
exactly on a threshold is on everywhere or nowhere (float32 thresholds would round 0.7 down
and flip such a cell in one place only). Thresholds are tuned on ``THRESHOLD_GRID``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mlbert.errors import UsageError

# Candidate thresholds 0.01, 0.02, ..., 0.99: a fixed grid keeps tuning cheap and less prone
# to fitting single validation rows than every distinct probability would.
THRESHOLD_GRID = np.round(np.arange(1, 100) / 100.0, 2)

Thresholds = Union[float, Sequence[float], np.ndarray]
# What a user may give: one number (every label), ``{label: number}`` (those labels; the others
# keep the model's), or one number per label in the model's label order.
ThresholdSpec = Union[float, Mapping[str, float], Sequence[float], np.ndarray]


def threshold_vector(thresholds: Thresholds, num_labels: int) -> np.ndarray:
    """``thresholds`` (one number, or one per label) as a float64 vector of ``num_labels``."""
    return np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (num_labels,)).copy()


def check_threshold(value: Any, what: str) -> float:
    """``value`` as a threshold, or a ``UsageError`` naming ``what``: a number from 0 to 1.

    The one range check for ``--threshold`` and the Python API's ``thresholds=``: a threshold
    outside [0, 1] (or NaN) would silently turn a label on for every text or for none.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UsageError(f"{what}: a threshold is a number from 0 to 1, not a {type(value).__name__}")
    number = float(value)
    if not 0.0 <= number <= 1.0:  # NaN fails this too
        raise UsageError(f"{what}: a threshold is a probability between 0 and 1")
    return number


def label_position(name: Any, label_names: Sequence[str], what: str) -> int:
    """The index of label ``name``, or a ``UsageError`` naming ``what`` and listing the labels."""
    names = list(label_names)
    if name not in names:
        raise UsageError(f"{what}: the model has no label {name!r} (labels: {', '.join(names)})")
    return names.index(name)


def resolve_thresholds(given: Optional[ThresholdSpec], label_names: Sequence[str], defaults: Thresholds) -> np.ndarray:
    """The float64 thresholds to decide with: ``given`` over ``defaults`` (the model's), every value checked.

    ``given`` is one number (every label), a ``{label: number}`` mapping (those labels, the
    others keep ``defaults``: ``--threshold joy=0.3`` does the same), or one number per label.
    """
    vector = threshold_vector(defaults, len(label_names))
    if given is None:
        return vector
    if isinstance(given, Mapping):
        for name, value in given.items():
            vector[label_position(name, label_names, "thresholds")] = check_threshold(
                value, f"thresholds[{name!r}] = {value!r}")
        return vector
    if isinstance(given, (str, bytes)):
        raise UsageError(f"thresholds = {given!r}: give a number, a {{label: number}} dict or one number per label")
    if isinstance(given, np.ndarray) and given.ndim == 0:
        given = given.item()
    if not isinstance(given, (Sequence, np.ndarray)):  # one number, or what check_threshold refuses
        vector[:] = check_threshold(given, f"thresholds = {given!r}")
        return vector
    values = list(given)
    if len(values) != len(label_names):
        raise UsageError(f"thresholds: {len(values)} numbers for {len(label_names)} labels; give one per label "
                         "(in the order of label_names), one number, or a {label: number} dict")
    return np.array([check_threshold(v, f"thresholds[{i}] = {v!r}") for i, v in enumerate(values)], dtype=np.float64)


def decide(probabilities: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Boolean matrix (rows x labels): ``probability >= threshold`` per label."""
    p = np.asarray(probabilities)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (rows, labels), not {p.shape}")
    t = threshold_vector(thresholds, p.shape[1])
    return p.astype(np.float64, copy=False) >= t[None, :]


def labels_and_scores(
    probabilities: np.ndarray,
    label_names: Sequence[str],
    thresholds: Thresholds,
    *,
    top_k: Optional[int] = None,
    scores: bool = True,
    decimals: Optional[int] = None,
) -> Tuple[List[List[str]], List[Optional[Dict[str, float]]]]:
    """Per row: the labels at or above threshold, highest score first, and the scores to show.

    ``top_k`` keeps at most K labels (the best above threshold) and only the K best scores;
    ``decimals`` rounds the scores (mlb-batch writes 4); ``scores=False`` gives None per row.
    The same for mlb-batch's records and ``Classifier.predict``.
    """
    probabilities = np.asarray(probabilities)
    n = probabilities.shape[0]
    if n == 0:
        return [], []
    names = np.array(list(label_names), dtype=object)
    order = np.argsort(-probabilities, axis=1, kind="stable")
    sorted_above = np.take_along_axis(decide(probabilities, thresholds), order, axis=1)
    if top_k is not None:
        sorted_above[:, top_k:] = False
    names_sorted = names[order]
    labels = [list(names_sorted[i][sorted_above[i]]) for i in range(n)]
    if not scores:
        return labels, [None] * n
    values = probabilities.astype(np.float64)
    if decimals is not None:
        values = np.round(values, decimals)
    if top_k is None:
        return labels, [dict(zip(label_names, row)) for row in values.tolist()]
    k = min(top_k, probabilities.shape[1])
    top_idx = order[:, :k]
    top_vals = np.take_along_axis(values, top_idx, axis=1).tolist()
    top_names = names[top_idx].tolist()
    return labels, [dict(zip(top_names[i], top_vals[i])) for i in range(n)]


def ranked_scores(probabilities: np.ndarray, label_names: Sequence[str], *,
                  top_k: Optional[int] = None) -> List[List[Dict[str, Any]]]:
    """Per row, ``[{"label": name, "score": probability}, ...]``, highest first, at most ``top_k``.

    The shape of the transformers text-classification pipeline called with ``top_k=None`` (or
    ``top_k=k``), so code written for it reads these unchanged. Ties keep label order, as the
    pipeline's stable sort does; scores are Python floats of the float32 probabilities, as its are.
    """
    p = np.asarray(probabilities)
    if p.shape[0] == 0:
        return []
    order = np.argsort(-p, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :top_k]
    names = list(label_names)
    values = np.take_along_axis(p, order, axis=1).tolist()
    return [[{"label": names[j], "score": v} for j, v in zip(row_order, row_values)]
            for row_order, row_values in zip(order.tolist(), values)]


@dataclass(frozen=True)
class RowAgreement:
    """How far two sets of scores for the same rows agree, row by row (issue 25).

    Aggregate metrics can hide a file that moves many rows in both directions; a user sees rows.
    ``same_rows``: rows whose label set (every label's decision) is the same in both.
    """

    rows: int
    same_rows: int
    max_abs_diff: float  # the largest change of any one score
    mean_abs_diff: float

    @property
    def share(self) -> float:
        """Share of rows with the same label set (1.0 for no rows)."""
        return self.same_rows / self.rows if self.rows else 1.0

    @property
    def changed_rows(self) -> int:
        return self.rows - self.same_rows

    def line(self) -> str:
        """One line for tables and messages."""
        return (f"{100 * self.share:.2f}% of rows with the same labels ({self.changed_rows} of {self.rows} changed), "
                f"largest score difference {self.max_abs_diff:.4f}")


def row_agreement(reference: np.ndarray, candidate: np.ndarray, thresholds: Thresholds,
                  candidate_thresholds: Optional[Thresholds] = None) -> RowAgreement:
    """Row-by-row agreement of ``candidate`` scores with ``reference`` scores (same rows, same labels).

    Each side decides at its own thresholds (``candidate_thresholds``, default the same).
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"scores must be two (rows, labels) matrices of one shape, not {a.shape} and {b.shape}")
    same = (decide(a, thresholds) == decide(b, thresholds if candidate_thresholds is None else candidate_thresholds))
    diff = np.abs(a - b)
    return RowAgreement(rows=int(a.shape[0]), same_rows=int(same.all(axis=1).sum()),
                        max_abs_diff=float(diff.max()) if diff.size else 0.0,
                        mean_abs_diff=float(diff.mean()) if diff.size else 0.0)
