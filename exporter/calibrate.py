"""What the inputs of an fp32 file's matrix products look like on real texts: the int8 schemes' calibration.

Why: per-row int8 (``exporter.rowwise``) fixes nothing ahead of time about a row's scale, but two
of its refinements need to know the activations: SmoothQuant's per-channel divisors (from each
channel's largest value) and GPTQ's weight rounding (from ``X^T X``, which says which input
channels a weight's rounding error reaches). Both are per channel or per matrix, never per
row, so a row still depends on itself alone. The texts go through the file's own header
(preprocessing, tokenizer) and the batch runtime; padding tokens are left out of every sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from mlbert.modelfile import ModelHeader

CALIBRATION_ROWS_PER_BATCH = 32


@dataclass
class Calibration:
    """Raw texts to calibrate on, and the header that says how the graph reads them."""

    texts: List[str]
    header: ModelHeader


@dataclass
class InputStats:
    """One product input over the calibration tokens."""

    hessian: np.ndarray  # (K, K) float64: sum over tokens of x x^T
    absmax: np.ndarray  # (K,) largest |x| per channel
    minimum: float
    tokens: int


def input_statistics(path: str, calibration: Calibration, sources: Sequence[str]) -> Dict[str, InputStats]:
    """``InputStats`` of the tensors ``sources`` of the fp32 graph ``path`` over the calibration texts."""
    import onnx
    from onnx import TensorProto, helper

    from mlbert.modelfile import attach_header
    from mlbert.runtime.session import Predictor, load_model

    model = onnx.load(path)
    attach_header(model, calibration.header)
    for name in sources:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    loaded = load_model(model.SerializeToString(), "cpu", streams=1)
    del model
    predictor = Predictor(loaded, token_budget=loaded.header.max_length * CALIBRATION_ROWS_PER_BATCH)
    prepared = loaded.header.preprocessing.apply(list(calibration.texts))
    stats: Dict[str, InputStats] = {}
    for start in range(0, len(prepared), CALIBRATION_ROWS_PER_BATCH):
        chunk = predictor.encoder.encode(prepared[start:start + CALIBRATION_ROWS_PER_BATCH])
        batch = chunk.batch(np.arange(len(chunk)), int(chunk.lengths.max()))
        real = batch.attention_mask.astype(bool)
        for name, value in zip(sources, predictor.outputs_for(batch, sources)):
            _add(stats, name, np.asarray(value)[real].astype(np.float64))
    return stats


def _add(stats: Dict[str, InputStats], name: str, rows: np.ndarray) -> None:
    """Fold a batch's real-token rows (tokens, K) into ``stats[name]``."""
    if name not in stats:
        k = rows.shape[1]
        stats[name] = InputStats(np.zeros((k, k)), np.zeros(k), float("inf"), 0)
    s = stats[name]
    s.hessian += rows.T @ rows
    s.absmax = np.maximum(s.absmax, np.abs(rows).max(axis=0))
    s.minimum = min(s.minimum, float(rows.min()))
    s.tokens += rows.shape[0]
