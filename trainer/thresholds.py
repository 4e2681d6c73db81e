"""Decision thresholds tuned on validation probabilities, one registry of objectives.

Which threshold is "best" depends on what the user measures (docs/TRAINING.md): on English
emotion tweets, one threshold per label maximising that label's F1 raised macro-F1 by about
9 points over a single global threshold and lowered samples-Jaccard by about 3, because rare
labels get low thresholds and fire often; one global threshold tuned for Jaccard or micro-F1
serves overall quality. So every objective is available, the trainer reports all of them,
and ``--threshold-objective`` takes its choices from ``OBJECTIVES``: a new objective is one
``register_objective`` call here.

Candidates are the runtime's ``THRESHOLD_GRID`` and decisions use its ``decide``, so a tuned
threshold means on the served file exactly what it meant here. Ties go to the candidate
closest to 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import numpy as np

from mlbert.decisions import THRESHOLD_GRID, decide
from mlbert.errors import UsageError
from mlbert.trainer.metrics import f1_scores, samples_jaccard

# Threshold for a label with no positive example in validation (its F1 is 0 whatever the threshold).
FALLBACK_THRESHOLD = 0.5

Score = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Objective:
    """What thresholds maximise on validation.

    ``score`` (true 0/1 matrix, predicted 0/1 matrix) -> number, for objectives with ONE
    global threshold; ``per_label`` objectives tune each label on its own F1 instead.
    """

    name: str
    help: str
    score: Optional[Score] = None
    per_label: bool = False


OBJECTIVES: Dict[str, Objective] = {}


def register_objective(objective: Objective) -> Objective:
    if objective.name in OBJECTIVES:
        raise ValueError(f"threshold objective {objective.name!r} is already registered")
    if objective.per_label == (objective.score is not None):
        raise ValueError(f"threshold objective {objective.name!r}: give a score function or per_label=True")
    OBJECTIVES[objective.name] = objective
    return objective


register_objective(Objective("jaccard", "one global threshold maximising samples-Jaccard", samples_jaccard))
register_objective(Objective("micro-f1", "one global threshold maximising micro-F1",
                             lambda y, pred: f1_scores(y, pred)["micro_f1"]))
register_objective(Objective("macro-f1", "one global threshold maximising macro-F1",
                             lambda y, pred: f1_scores(y, pred)["macro_f1"]))
register_objective(Objective("label-f1", "one threshold per label maximising its own F1 (best macro-F1)",
                             per_label=True))


def objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise UsageError(f"threshold objective {name!r}: use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def _best(scores: np.ndarray) -> float:
    """The grid value with the highest score, ties broken towards 0.5."""
    best = scores.max()
    candidates = THRESHOLD_GRID[np.isclose(scores, best, rtol=0, atol=1e-12)]
    return float(candidates[np.argmin(np.abs(candidates - 0.5))])


def label_f1_curves(y_true: Any, probabilities: Any, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Each label's F1 at each threshold of ``grid``: shape ``(len(grid), labels)``.

    What the ``label-f1`` tuner maximises and the training report plots (F1 against threshold).
    """
    y = (np.asarray(y_true, dtype=np.float32) > 0.5).astype(np.int8)
    p = np.asarray(probabilities, dtype=np.float64)
    # (grid, rows, labels) would be large for big validation sets; loop over the grid instead.
    tp = np.zeros((len(grid), y.shape[1]))
    fp = np.zeros((len(grid), y.shape[1]))
    for g, t in enumerate(grid):
        pred = decide(p, t)
        tp[g] = np.logical_and(pred, y == 1).sum(axis=0)
        fp[g] = np.logical_and(pred, y == 0).sum(axis=0)
    fn = y.sum(axis=0)[None, :] - tp
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def _per_label_f1_thresholds(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    n_labels = y.shape[1]
    out = np.full(n_labels, FALLBACK_THRESHOLD)
    positives = y.sum(axis=0)
    f1 = label_f1_curves(y, p)
    for j in range(n_labels):
        if positives[j] > 0:
            out[j] = _best(f1[:, j])
    return out


def tune_thresholds(y_true: Any, probabilities: Any, objective_name: str = "jaccard") -> np.ndarray:
    """One threshold per label (shape ``(L,)``) chosen on validation data for ``objective_name``.

    Per-label objectives give labels without a positive validation example
    ``FALLBACK_THRESHOLD``; global ones repeat their one threshold for every label.
    """
    chosen = objective(objective_name)
    y = (np.asarray(y_true, dtype=np.float32) > 0.5).astype(np.int8)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"y_true {y.shape} and probabilities {p.shape} must both be (rows, labels)")
    if chosen.per_label:
        return _per_label_f1_thresholds(y, p)
    assert chosen.score is not None
    scores = np.array([chosen.score(y, decide(p, t).astype(np.int8)) for t in THRESHOLD_GRID])
    return np.full(y.shape[1], _best(scores))


def tune_all(y_true: Any, probabilities: Any) -> Dict[str, np.ndarray]:
    """Thresholds for every objective, so the trade-off can be reported side by side."""
    return {name: tune_thresholds(y_true, probabilities, name) for name in OBJECTIVES}
