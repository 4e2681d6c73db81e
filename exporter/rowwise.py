"""Per-row int8: every token's activations get a scale of their own, so a row's scores depend on that row alone.

Why (issue 25): onnxruntime's ``quantize_dynamic`` quantizes a matrix product's input with
``DynamicQuantizeLinear``, ONE scale and zero point for the whole tensor, which is the whole
padded batch. One batch-mate with large activations (BERT's outlier dimensions) coarsens every
other row's numbers, so the same text got other scores with another token budget, chunk size,
engine, or alone. Here each matrix product with constant weights becomes::

    x [.., K] -> [M, K] -> s = max|x_m| / 127 per row m (a token)
      -> QuantizeLinear(x, s, 128, axis=0)                      u8, symmetric around 128
      -> MatMulIntegerToFloat(xq, Wq, s, w_scale, 128, 0)       s8 weights, per output column
      -> [.., N] -> the graph's own bias Add

A token's numbers depend on that token alone, and a padding token is a row of its own, so it
cannot touch a real one. The integer products run on the same MLAS U8S8 kernels as the dynamic
scheme: dot-product instructions on VNNI, ``VPMADDUBSW`` on AVX2, where 7-bit weights keep every
pair sum in range (2 x 255 x 64 < 32767): no integer product saturates on any x86 CPU. (The float
steps between the products, LayerNorm, softmax and the scales, round their last bits differently
on other kernels, and a requantized value near a rounding step can move: on onnxruntime's AVX2
kernels the probabilities moved by up to 0.003 on 300 texts, `benchmarks/force_avx2.py --check`,
against 0.02 for the per-batch file. On one machine a row's scores are fixed to the bit.)
Integer accumulation is exact, so no kernel blocking can make a row's result depend on how many
rows share the batch. Products that read one tensor (query, key, value) share its quantized copy.

Two onnxruntime details shape the graph: ``MatMulIntegerToFloat`` multiplies its output by a
non-scalar A scale after the product, bias included, so no bias is passed to it; and
``QuantizeLinear`` takes one scale per row only along an axis of a 2-D view, hence the reshapes
(which copy nothing).

The embedding tables (``Gather`` on a constant matrix) are stored as int8 with one scale per
table row (per token id), looked up and rescaled: weights only, row-local by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

ACTIVATION_LEVELS = 127  # symmetric int8 activations: round(x / s) in [-127, 127], stored as u8 around 128
ACTIVATION_ZERO_POINT = 128
WEIGHT_BITS = 7  # signed 7-bit weights: no saturating pair sum on AVX2's VPMADDUBSW
EMBEDDING_LEVELS = 127
TOOL = "mlbert.exporter.rowwise"


@dataclass
class Rewrite:
    """What is added to the graph: nodes that replace a node (keyed by its first output), and new initializers.

    ``apply_rewrite`` puts it into the model; benchmarks that rewrite products their own way use the same pair.
    """

    nodes: Dict[str, List[Any]] = field(default_factory=dict)  # replaced node's first output -> new nodes
    initializers: List[Any] = field(default_factory=list)
    quantized: List[str] = field(default_factory=list)

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name


def quantizable_products(graph: Any, keep_fp32: Sequence[str] = ()) -> Dict[str, List[Any]]:
    """MatMul nodes whose second input is a constant 2-D float matrix, grouped by their first input."""
    from onnx import TensorProto

    matrices = {i.name for i in graph.initializer if len(i.dims) == 2 and i.data_type == TensorProto.FLOAT}
    groups: Dict[str, List[Any]] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in matrices and node.name not in keep_fp32:
            groups.setdefault(node.input[0], []).append(node)
    return groups


@dataclass(frozen=True)
class RowInput:
    """How one product input is quantized, beyond the default (symmetric, 127 levels a side).

    ``smooth``: per-channel divisors (SmoothQuant): the input is divided by them before its rows
    are quantized and the weights' rows multiplied by them, so an outlier channel no longer sets
    every row's scale. ``shift``: a constant that makes the input non-negative (GELU's output is
    never below -0.17): ``x + shift`` is quantized unsigned with 255 levels, twice as fine, and
    ``shift`` times the weights' column sums comes off the bias.
    """

    smooth: Optional[np.ndarray] = None
    shift: float = 0.0


# (input tensor name, float weight [K, N]) -> (int8 weight [K, N], float32 scale per column [N])
WeightQuantizer = Callable[[str, np.ndarray], Tuple[np.ndarray, np.ndarray]]


def quantize_rowwise(src: str, dst: str, weights: WeightQuantizer, *, weight_bits: int,
                     keep_fp32: Sequence[str] = (), inputs: Optional[Mapping[str, RowInput]] = None) -> Dict[str, Any]:
    """Rewrite ``src``'s constant-weight products (and embedding tables) as per-row int8 into ``dst``.

    ``weights`` quantizes each (smoothed) weight matrix to ``weight_bits`` (``exporter.gptq``, which
    rounds to nearest without calibration); ``keep_fp32`` names MatMul nodes left in float;
    ``inputs`` says how to quantize some inputs (by tensor name). Returns what was done, for the header.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    inputs = dict(inputs or {})
    rewrite = Rewrite()
    _shared_constants(rewrite)
    for index, (source, products) in enumerate(quantizable_products(graph, keep_fp32).items()):
        spec = inputs.get(source, RowInput())
        k = int(initializers[products[0].input[1]].dims[0])
        rows = _row_quantizer(rewrite, f"mlb_rq{index}", source, k, spec)
        for j, product in enumerate(products):
            matrix = numpy_helper.to_array(initializers[product.input[1]]).astype(np.float64)
            if spec.smooth is not None:
                matrix = matrix * np.asarray(spec.smooth, np.float64)[:, None]
            weight, scale = weights(source, matrix)
            _int8_product(rewrite, f"mlb_rq{index}_{j}", product, (weight, scale), rows, spec.shift)
            if j == 0:  # the first reader in graph order: the rows are quantized just before it
                rewrite.nodes[product.output[0]] = rewrite.nodes.pop(f"mlb_rq{index}") + rewrite.nodes[product.output[0]]
    tables = _quantize_embeddings(rewrite, graph, initializers)
    apply_rewrite(model, rewrite)
    onnx.save(model, dst)
    return {"quantized_products": len(rewrite.quantized), "kept_fp32": sorted(keep_fp32),
            "embedding_tables": tables, "weight_bits": weight_bits,
            "smoothed_inputs": sum(1 for s in inputs.values() if s.smooth is not None),
            "shifted_inputs": sum(1 for s in inputs.values() if s.shift)}


def apply_rewrite(model: Any, rewrite: Rewrite) -> None:
    """``model`` with ``rewrite``'s nodes in place of the ones they replace, initializers nothing reads any
    more dropped, and the com.microsoft operator set (MatMulIntegerToFloat, MatMulNBits) declared."""
    from onnx import helper

    _replace_nodes(model.graph, rewrite)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _replace_nodes(graph: Any, rewrite: Rewrite) -> None:
    """The graph's nodes with the replacements in place; initializers nothing reads any more dropped."""
    nodes = [n for node in graph.node for n in rewrite.nodes.get(node.output[0], [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + [i for i in rewrite.initializers if i.name in used])


def _shared_constants(rewrite: Rewrite) -> None:
    rewrite.const("mlb_rq_levels", np.array(float(ACTIVATION_LEVELS), np.float32))
    rewrite.const("mlb_rq_levels_u", np.array(255.0, np.float32))
    rewrite.const("mlb_rq_tiny", np.array(np.finfo(np.float32).tiny, np.float32))
    rewrite.const("mlb_rq_zero", np.array(0.0, np.float32))
    rewrite.const("mlb_rq_zp_float", np.array(float(ACTIVATION_ZERO_POINT), np.float32))
    rewrite.const("mlb_rq_zp", np.array(ACTIVATION_ZERO_POINT, np.uint8))
    rewrite.const("mlb_rq_zp_u", np.array(0, np.uint8))
    rewrite.const("mlb_rq_axis1", np.array([1], np.int64))


def _row_quantizer(rewrite: Rewrite, p: str, source: str, k: int, spec: RowInput) -> Tuple[str, str, str, str]:
    """Nodes quantizing ``source`` row by row; returns (u8 rows [M, K], scales [M, 1], leading shape, zero point).

    The zero point is the same for every row (128, or 0 for a shifted input); ``QuantizeLinear``
    wants it per row, shaped like the scales, so it is made from them (a vector of M bytes).
    """
    from onnx import TensorProto, helper

    make = helper.make_node
    shape = rewrite.const(f"{p}_rows", np.array([-1, k], np.int64))
    nodes = [make("Reshape", [source, shape], [f"{p}_x"], name=f"{p}_x")]
    x = f"{p}_x"
    if spec.smooth is not None:
        rewrite.const(f"{p}_smooth", (1.0 / np.asarray(spec.smooth, np.float64)).astype(np.float32))
        nodes.append(make("Mul", [x, f"{p}_smooth"], [f"{p}_xs"], name=f"{p}_xs"))
        x = f"{p}_xs"
    if spec.shift:
        rewrite.const(f"{p}_shift", np.array(spec.shift, np.float32))
        nodes += [make("Add", [x, f"{p}_shift"], [f"{p}_xp"], name=f"{p}_xp"),
                  make("ReduceMax", [f"{p}_xp", "mlb_rq_axis1"], [f"{p}_max"], keepdims=0, name=f"{p}_max")]
        x, levels, zero, zero_float = f"{p}_xp", "mlb_rq_levels_u", "mlb_rq_zp_u", "mlb_rq_zero"
    else:
        nodes += [make("Abs", [x], [f"{p}_abs"], name=f"{p}_abs"),
                  make("ReduceMax", [f"{p}_abs", "mlb_rq_axis1"], [f"{p}_max"], keepdims=0, name=f"{p}_max")]
        levels, zero, zero_float = "mlb_rq_levels", "mlb_rq_zp", "mlb_rq_zp_float"
    rewrite.nodes[p] = nodes + [
        # An all-zero row gets the smallest normal scale instead of a division by zero.
        make("Max", [f"{p}_max", "mlb_rq_tiny"], [f"{p}_max1"], name=f"{p}_max1"),
        make("Div", [f"{p}_max1", levels], [f"{p}_s"], name=f"{p}_s"),
        make("Mul", [f"{p}_s", "mlb_rq_zero"], [f"{p}_z0"], name=f"{p}_z0"),
        make("Add", [f"{p}_z0", zero_float], [f"{p}_z1"], name=f"{p}_z1"),
        make("Cast", [f"{p}_z1"], [f"{p}_zp"], to=TensorProto.UINT8, name=f"{p}_zp"),
        make("QuantizeLinear", [x, f"{p}_s", f"{p}_zp"], [f"{p}_q"], axis=0, name=f"{p}_q"),
        make("Unsqueeze", [f"{p}_s", "mlb_rq_axis1"], [f"{p}_s2"], name=f"{p}_s2"),
        make("Shape", [source], [f"{p}_lead"], end=-1, name=f"{p}_lead"),
    ]
    return f"{p}_q", f"{p}_s2", f"{p}_lead", zero


def _int8_product(rewrite: Rewrite, q: str, product: Any, weight: Tuple[np.ndarray, np.ndarray],
                  rows: Tuple[str, str, str, str], shift: float) -> None:
    """``product`` as an integer product of the quantized rows and int8 weights, reshaped back.

    A shifted input computed ``(x + shift) W``: ``shift`` times W's column sums is subtracted.
    """
    from onnx import helper

    quantized, scale, lead, zero = rows
    values, weight_scale = weight
    n = values.shape[1]
    rewrite.const(f"{q}_w", values.astype(np.int8))
    rewrite.const(f"{q}_ws", np.asarray(weight_scale, np.float32))
    rewrite.const(f"{q}_wz", np.zeros(n, np.int8))
    rewrite.const(f"{q}_n", np.array([n], np.int64))
    out = product.output[0]
    nodes = [
        helper.make_node("MatMulIntegerToFloat", [quantized, f"{q}_w", scale, f"{q}_ws", zero, f"{q}_wz"],
                         [f"{q}_y"], domain="com.microsoft", name=f"{q}_mm"),
        helper.make_node("Concat", [lead, f"{q}_n"], [f"{q}_shape"], axis=0, name=f"{q}_shape"),
        helper.make_node("Reshape", [f"{q}_y", f"{q}_shape"], [f"{q}_out" if shift else out], name=f"{q}_out"),
    ]
    if shift:
        sums = shift * values.astype(np.float64).sum(axis=0) * np.asarray(weight_scale, np.float64)
        rewrite.const(f"{q}_shift", sums.astype(np.float32))
        nodes.append(helper.make_node("Sub", [f"{q}_out", f"{q}_shift"], [out], name=f"{q}_unshift"))
    rewrite.nodes[out] = nodes
    rewrite.quantized.append(product.name)


def _quantize_embeddings(rewrite: Rewrite, graph: Any, weights: Dict[str, Any]) -> int:
    """Each Gather from a constant float matrix reads int8 rows with one scale per row instead."""
    from onnx import TensorProto, helper, numpy_helper

    count = 0
    for node in graph.node:
        table = weights.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or len(table.dims) != 2 or table.data_type != TensorProto.FLOAT:
            continue
        if any(a.name == "axis" and a.i != 0 for a in node.attribute):
            continue
        values = numpy_helper.to_array(table).astype(np.float64)
        scale = np.abs(values).max(axis=1, keepdims=True) / EMBEDDING_LEVELS
        scale[scale == 0] = 1.0
        e = f"mlb_emb{count}"
        rewrite.const(f"{e}_q", np.clip(np.round(values / scale), -EMBEDDING_LEVELS, EMBEDDING_LEVELS).astype(np.int8))
        rewrite.const(f"{e}_s", scale.astype(np.float32))
        ids = node.input[1]
        rewrite.nodes[node.output[0]] = [
            helper.make_node("Gather", [f"{e}_q", ids], [f"{e}_rows"], axis=0, name=f"{e}_rows"),
            helper.make_node("Gather", [f"{e}_s", ids], [f"{e}_scales"], axis=0, name=f"{e}_scales"),
            helper.make_node("Cast", [f"{e}_rows"], [f"{e}_float"], to=TensorProto.FLOAT, name=f"{e}_float"),
            helper.make_node("Mul", [f"{e}_float", f"{e}_scales"], [node.output[0]], name=f"{e}_value"),
        ]
        count += 1
    return count
