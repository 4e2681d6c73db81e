"""The one decision rule: a label is on when its probability is >= its threshold.

mlb-batch's records, mlb-eval's and mlb-train's metrics, the exporter's accuracy gate and
the threshold tuner all decide through ``decide``, in float64, so a probability that sits
exactly on a threshold is on everywhere or nowhere (float32 thresholds would round 0.7 down
and flip such a cell in one place only). Thresholds are tuned on ``THRESHOLD_GRID``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

# Candidate thresholds 0.01, 0.02, ..., 0.99: a fixed grid keeps tuning cheap and less prone
# to fitting single validation rows than every distinct probability would.
THRESHOLD_GRID = np.round(np.arange(1, 100) / 100.0, 2)

Thresholds = Union[float, Sequence[float], np.ndarray]


def threshold_vector(thresholds: Thresholds, num_labels: int) -> np.ndarray:
    """``thresholds`` (one number, or one per label) as a float64 vector of ``num_labels``."""
    return np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (num_labels,)).copy()


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
