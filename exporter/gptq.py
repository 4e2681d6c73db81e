"""Weight rounding that knows the activations: GPTQ, with per-column scales chosen by squared error.

Why: the per-row int8 file keeps its weights to 7 bits so that AVX2's ``VPMADDUBSW`` cannot
saturate (``exporter.rowwise``), and rounding each weight to the nearest 7-bit step costs rows.
GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers") rounds one input channel at a time and spreads each rounding error
over the channels not rounded yet, weighted by how the calibration activations correlate
(``H = X^T X``), so the product ``x W`` moves as little as the data allows. With the
smoothing of ``rowwise_plan`` it raised the GoEmotions test rows that keep the fp32 file's
labels from 96.92% (``rowwise-rtn``) to 98.18% (``rowwise``), XED English from 94.47% to
95.27% (``benchmarks/bench_int8.py``, docs/BENCHMARKS.md). It changes which integers are
stored, not the file's format or kernels.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

# Dampening added to H's diagonal, relative to its mean: keeps the inverse stable when the
# calibration tokens do not span every channel (few texts, dead channels).
DAMPING = 0.01
CLIP_RATIOS = np.linspace(0.6, 1.0, 41)


def column_scales(weight: np.ndarray, levels: int) -> np.ndarray:
    """Per-column scales that minimise the squared rounding error (clipping the largest weights when it pays)."""
    weight = np.asarray(weight, np.float64)
    largest = np.abs(weight).max(axis=0)
    best_error = np.full(weight.shape[1], np.inf)
    best = largest / levels
    for ratio in CLIP_RATIOS:
        scale = largest * ratio / levels
        scale[scale == 0] = 1.0
        error = ((np.clip(np.round(weight / scale), -levels, levels) * scale - weight) ** 2).sum(axis=0)
        better = error < best_error
        best_error[better] = error[better]
        best[better] = scale[better]
    best[best == 0] = 1.0
    return best


def gptq(weight: np.ndarray, hessian: Optional[np.ndarray], bits: int,
         act_order: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """int8 weights (``bits`` wide, symmetric, per output column) for ``y = x W``, W (K, N); and scales.

    ``act_order``: input channels are rounded in order of decreasing ``H`` diagonal (the channels
    the activations use most go first, while every other channel can still absorb their error).
    Without ``hessian`` (no calibration texts) this is round-to-nearest with the same scales.
    """
    levels = 2 ** (bits - 1) - 1
    remaining = np.array(weight, dtype=np.float64)
    scale = column_scales(remaining, levels)
    if hessian is None:
        return np.clip(np.round(remaining / scale), -levels, levels).astype(np.int8), scale.astype(np.float32)
    hessian = np.array(hessian, dtype=np.float64)
    order = np.argsort(-np.diag(hessian), kind="stable") if act_order else np.arange(remaining.shape[0])
    remaining = remaining[order]
    inverse = _inverse_cholesky(hessian[np.ix_(order, order)])
    quantized = np.zeros(remaining.shape, dtype=np.int8)
    for i in range(remaining.shape[0]):
        q = np.clip(np.round(remaining[i] / scale), -levels, levels)
        quantized[i] = q
        error = (remaining[i] - q * scale) / inverse[i, i]
        remaining[i + 1:] -= np.outer(inverse[i, i + 1:], error)
    restored = np.empty_like(quantized)
    restored[order] = quantized
    return restored, scale.astype(np.float32)


def _inverse_cholesky(hessian: np.ndarray) -> np.ndarray:
    """The upper Cholesky factor of ``H^-1``, dampened. A channel no calibration token used keeps its
    weights (rounded to nearest): unseen is not the same as never used."""
    dead = np.diag(hessian) == 0
    hessian[dead, dead] = 1.0
    hessian[np.diag_indices_from(hessian)] += DAMPING * float(np.mean(np.diag(hessian)))
    return np.linalg.cholesky(np.linalg.inv(hessian)).T
