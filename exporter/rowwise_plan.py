"""Which refinements each input of a per-row int8 file gets, and its weights: the ``rowwise`` scheme's plan.

``exporter.rowwise`` rewrites the graph; this module decides, from the graph and (when there
are calibration texts) from what the inputs look like on them (``exporter.calibrate``):

* an input that is the output of an exact GELU (``x * (1 + erf(x / sqrt 2)) / 2``, the FFN's
  second matrix) is never below -0.17, so it is shifted by ``GELU_SHIFT`` and quantized unsigned
  with 255 levels, twice as fine as symmetric (no calibration needed);
* every other input gets SmoothQuant divisors ``s_j = max|x_j|^a / max|W_j|^(1-a)`` per channel
  (``SMOOTH_ALPHA``), from the calibration texts: BERT's outlier channels (a few LayerNorm
  outputs reach 30 where the rest stay near 2) stop setting every token's scale;
* the weights are rounded by GPTQ with ``X^T X`` of the calibration texts (``exporter.gptq``).

All of it is fixed at export, per channel or per matrix, so a row still depends on itself alone.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mlbert.exporter import rowwise
from mlbert.exporter.calibrate import Calibration, InputStats, input_statistics
from mlbert.exporter.gptq import gptq

GELU_SHIFT = 0.17  # min over x of x * Phi(x) is -0.16997 (at x = -0.7518)
SMOOTH_ALPHA = 0.5


def quantize_planned(src: str, dst: str, calibration: Optional[Calibration], *, alpha: float = SMOOTH_ALPHA,
                     act_order: bool = True, stats: Optional[Dict[str, InputStats]] = None,
                     keep_fp32: Sequence[str] = ()) -> Dict[str, Any]:
    """Per-row int8 of ``src`` into ``dst``, refined as the module says; what was done, for the header.

    ``keep_fp32`` names MatMul nodes left in float (benchmarks measure what that buys).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(src).graph
    groups = rowwise.quantizable_products(graph, keep_fp32)
    gelu = gelu_outputs(graph)
    if stats is None:
        stats = input_statistics(src, calibration, list(groups)) if calibration is not None and calibration.texts else {}
    matrices = {i.name: numpy_helper.to_array(i) for i in graph.initializer
                if any(p.input[1] == i.name for ps in groups.values() for p in ps)}
    inputs: Dict[str, rowwise.RowInput] = {}
    for source, products in groups.items():
        if source in gelu:
            inputs[source] = rowwise.RowInput(shift=GELU_SHIFT)
        elif source in stats:
            weights = [matrices[p.input[1]] for p in products]
            inputs[source] = rowwise.RowInput(smooth=smoothing(stats[source].absmax, weights, alpha))
    del graph

    def weights(source: str, matrix: np.ndarray):
        hessian = None
        if source in stats:
            hessian = stats[source].hessian
            smooth = inputs[source].smooth
            if smooth is not None:  # the smoothed input is x / s: its X^T X is scaled on both sides
                hessian = hessian / np.outer(smooth, smooth)
        return gptq(matrix, hessian, rowwise.WEIGHT_BITS, act_order)

    done = rowwise.quantize_rowwise(src, dst, weights, weight_bits=rowwise.WEIGHT_BITS, inputs=inputs,
                                    keep_fp32=keep_fp32)
    done.update(calibration_tokens=max((s.tokens for s in stats.values()), default=0),
                weight_rounding="gptq" if stats else "nearest")
    return done


def smoothing(absmax: np.ndarray, weights: List[np.ndarray], alpha: float = SMOOTH_ALPHA) -> np.ndarray:
    """SmoothQuant's per-channel divisors for one input read by ``weights`` (each (K, N))."""
    weight_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
    smooth = np.maximum(absmax, 1e-5) ** alpha / np.maximum(weight_max, 1e-5) ** (1 - alpha)
    return np.clip(smooth, 1e-3, 1e3)


def gelu_outputs(graph: Any) -> set:
    """Tensors computed as exact GELU from the same input: ``Mul(Mul(x, Add(Erf(Div(x, c)), 1)), 0.5)``
    in any operand order (how torch's GELU exports), so their minimum is -0.17."""
    producer = {o: n for n in graph.node for o in n.output}
    found = set()
    for node in graph.node:
        if node.op_type != "Mul":
            continue
        inner = [producer.get(i) for i in node.input]
        for mul in (n for n in inner if n is not None and n.op_type == "Mul"):
            if _erf_of_own_input(mul, producer):
                found.add(node.output[0])
    return found


def _erf_of_own_input(mul: Any, producer: Dict[str, Any]) -> bool:
    """``mul`` is ``x * (erf(x / c) + 1)`` for one tensor x."""
    for x, other in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
        add = producer.get(other)
        if add is None or add.op_type != "Add":
            continue
        for erf in (producer.get(i) for i in add.input):
            if erf is not None and erf.op_type == "Erf":
                div = producer.get(erf.input[0])
                if div is not None and div.op_type in ("Div", "Mul") and div.input[0] == x:
                    return True
    return False
