"""Decision thresholds tuned on validation probabilities.

Which threshold is "best" depends on what the user measures (see docs/TRAINING.md and
/work/shared/MEASURED.md): one threshold per label maximising that label's F1 raises
macro-F1 but lowers samples-Jaccard and exact match, because rare labels get low
thresholds and fire often; one global threshold tuned for Jaccard or micro-F1 serves
overall quality. So every objective is available and the trainer reports all of them.

Candidates are a fixed grid (0.01 .. 0.99 in steps of 0.01) rather than every distinct
probability, which keeps tuning cheap and less prone to fitting single validation rows.
Ties go to the candidate closest to 0.5.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np

from ..batch.errors import UsageError

from .metrics import f1_scores, samples_jaccard

OBJECTIVES = ("label-f1", "micro-f1", "macro-f1", "jaccard")
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
# Threshold for a label with no positive example in validation (its F1 is 0 whatever the threshold).
FALLBACK_THRESHOLD = 0.5


def _best(scores: np.ndarray) -> float:
    """The grid value with the highest score, ties broken towards 0.5."""
    best = scores.max()
    candidates = GRID[np.isclose(scores, best, rtol=0, atol=1e-12)]
    return float(candidates[np.argmin(np.abs(candidates - 0.5))])


def _global_objective(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    if name == "jaccard":
        return samples_jaccard
    if name == "micro-f1":
        return lambda y, pred: f1_scores(y, pred)["micro_f1"]
    if name == "macro-f1":
        return lambda y, pred: f1_scores(y, pred)["macro_f1"]
    raise UsageError(f"threshold objective {name!r}: use one of {', '.join(OBJECTIVES)}")


def tune_thresholds(y_true: Any, probabilities: Any, objective: str = "jaccard") -> np.ndarray:
    """One threshold per label (shape ``(L,)``) chosen on validation data.

    ``label-f1``: each label its own threshold maximising that label's F1; labels without
    a positive validation example get ``FALLBACK_THRESHOLD``. ``micro-f1``, ``macro-f1``,
    ``jaccard``: one global threshold maximising that metric, repeated for every label.
    """
    y = (np.asarray(y_true, dtype=np.float32) > 0.5).astype(np.int8)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"y_true {y.shape} and probabilities {p.shape} must both be (rows, labels)")
    n_labels = y.shape[1]
    if objective == "label-f1":
        out = np.full(n_labels, FALLBACK_THRESHOLD)
        # (grid, rows, labels) would be large for big validation sets; loop over the grid instead.
        tp = np.zeros((len(GRID), n_labels))
        fp = np.zeros((len(GRID), n_labels))
        positives = y.sum(axis=0)
        for g, t in enumerate(GRID):
            pred = p >= t
            tp[g] = np.logical_and(pred, y == 1).sum(axis=0)
            fp[g] = np.logical_and(pred, y == 0).sum(axis=0)
        fn = positives[None, :] - tp
        denom = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        for j in range(n_labels):
            if positives[j] > 0:
                out[j] = _best(f1[:, j])
        return out
    score = _global_objective(objective)
    scores = np.array([score(y, (p >= t).astype(np.int8)) for t in GRID])
    return np.full(n_labels, _best(scores))


def tune_all(y_true: Any, probabilities: Any) -> Dict[str, np.ndarray]:
    """Thresholds for every objective, so the trade-off can be reported side by side."""
    return {name: tune_thresholds(y_true, probabilities, name) for name in OBJECTIVES}
