"""The one decision rule: a label is on when its probability is >= its threshold.

mlb-batch's records, mlb-eval's and mlb-train's metrics, the exporter's accuracy gate and
the threshold tuner all decide through ``decide``, in float64, so a probability that sits
exactly on a threshold is on everywhere or nowhere (float32 thresholds would round 0.7 down
and flip such a cell in one place only). Thresholds are tuned on ``THRESHOLD_GRID``.
"""

from __future__ import annotations

from typing import Sequence, Union

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
