"""int8 files made by hand, to measure roads the exporter does not take (issue 25's list).

``int8_files`` makes every candidate the exporter can write; the ones here answer "would
another road have met the row-agreement bar?" with a file, measured by the same tables:

* ``ffnfp32``: the per-batch scheme with each layer's feed-forward output product in fp32;
* ``static``, ``staticpct``, ``staticent``: onnxruntime's ``quantize_static`` (QDQ), activation
  ranges fixed at export from dev rows by MinMax, percentile (99.999) or entropy. As onnxruntime's
  calibrators see them, the ranges include padding positions: each batch's own for MinMax, one
  width shared by every batch for the histogram methods (which stack the batches);
* ``qkvfp32``, ``ffn2fp32``: the default row-wise file with one kind of product left in fp32:
  each layer's query, key and value products, or each layer's feed-forward output product;
* ``nbits``: every constant-weight product as onnxruntime's ``MatMulNBits``, 8-bit weights
  with a scale per 32 input channels, ``accuracy_level`` 4 (activations quantized to int8 per
  32 channels of each row by the kernel, integer dot products);
* ``wonly``: ``MatMulNBits`` with a scale per 16 channels and ``accuracy_level`` 1: the weights
  dequantized and multiplied in fp32, no activation quantized;
* ``gptqw8``: 8-bit weights rounded by GPTQ (``exporter.gptq``, ``X^T X`` from the default file's
  calibration texts, no smoothing), a scale per output column, stored dequantized in an fp32 file.

``wonly`` and ``gptqw8`` show what two 8-bit weight roundings cost when no activation is
quantized (to nearest with a scale per 16 channels; GPTQ with a scale per column). They do not
rule out finer or trained 8-bit roundings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

import common as c

CALIBRATION_ROWS = 256
PERCENTILE = 99.999
NBITS = {"nbits": (32, 4), "wonly": (16, 1)}  # key -> (channels per weight scale, accuracy_level)
# key -> (MatMul names containing any of these, but not that)
ROWWISE_FP32_KINDS = {"qkvfp32": (("/attention/self/query/", "/attention/self/key/", "/attention/self/value/"), ""),
                      "ffn2fp32": (("/output/dense/",), "/attention/")}

TITLES = {
    "ffnfp32": ("int8 portable, feed-forward output in fp32", "as portable, but the 2nd feed-forward matrix of "
                "each layer (input: GELU's output, the widest range) left in fp32"),
    "static": ("int8 static QDQ MinMax: S8 7-bit per-channel, unfused", f"onnxruntime's quantize_static (QDQ, "
               f"MinMax) calibrated on {CALIBRATION_ROWS} dev rows; activations' scales fixed ahead of time"),
    "staticpct": ("int8 static QDQ percentile", f"as static, ranges at the {PERCENTILE} percentile"),
    "staticent": ("int8 static QDQ entropy", "as static, ranges by entropy (KL) calibration"),
    "qkvfp32": ("int8 rowwise, query/key/value in fp32", "the default file with each layer's query, key and "
                "value products left in fp32"),
    "ffn2fp32": ("int8 rowwise, feed-forward output in fp32", "the default file with each layer's feed-forward "
                 "output product left in fp32"),
    "nbits": ("MatMulNBits 8-bit, 32 channels per scale, int8 compute", "onnxruntime's MatMulNBits, bits 8, "
              "block 32, accuracy_level 4 (activations int8 per 32 channels of a row)"),
    "wonly": ("MatMulNBits 8-bit weights only, fp32 compute", "MatMulNBits, bits 8, block 16, accuracy_level 1: "
              "the weights' error alone"),
    "gptqw8": ("GPTQ 8-bit weights only, fp32 compute", "exporter.gptq 8-bit per column from the calibration "
               "texts' X^T X, stored dequantized in fp32: the weights' error alone"),
}


def build(key: str, fp32: Path, fused: Path, out: Path, data_dir: Path, hf_config: Dict[str, Any]) -> Dict[str, Any]:
    """Write the hand-made candidate ``key`` to ``out``; returns what its header records as quantization."""
    from mlbert.exporter import quantize as q

    if key == "ffnfp32":
        q.fuse_encoder(str(fp32), str(fused), hf_config)
        quantize_leaving_ffn_output(fused, out)
        return dict(q.INT8_SCHEMES["portable"].settings(), config=key)
    if key.startswith("static"):
        method = {"static": "MinMax", "staticpct": "Percentile", "staticent": "Entropy"}[key]
        quantize_static_qdq(fp32, out, data_dir, method)
        return {"mode": "int8", "method": "static", "config": key, "calibration": method, "weights_dtype": "QInt8",
                "reduce_range": True, "per_channel": True, "fused": False}
    if key in ROWWISE_FP32_KINDS:
        return rowwise_keeping(fp32, out, data_dir, key)
    if key == "gptqw8":
        return {"mode": "fp32", "method": "gptq-dequantized", "config": key, "bits": 8,
                "products": gptq_weights_only(fp32, out, data_dir, bits=8)}
    if key in NBITS:
        block, level = NBITS[key]
        count = matmul_nbits(fp32, out, bits=8, block=block, accuracy_level=level)
        return {"mode": "int8", "method": "matmulnbits", "config": key, "bits": 8, "block_size": block,
                "accuracy_level": level, "products": count}
    raise KeyError(key)


def _constant_matmuls(graph: Any) -> List[Tuple[Any, Any]]:
    """(MatMul node, its constant weight initializer) for every product the exporter would quantize
    (``exporter.rowwise.quantizable_products``), in graph order."""
    from mlbert.exporter.rowwise import quantizable_products

    chosen = {p.output[0] for products in quantizable_products(graph).values() for p in products}
    matrices = {i.name: i for i in graph.initializer}
    return [(n, matrices[n.input[1]]) for n in graph.node if n.output[0] in chosen]


def rowwise_keeping(fp32: Path, out: Path, data_dir: Path, kind: str) -> Dict[str, Any]:
    """The default row-wise file (calibrated as mlb-export --validate-on dev) with ``kind``'s products in fp32."""
    import onnx

    from mlbert.exporter import quantize as q
    from mlbert.exporter.rowwise_plan import quantize_planned

    include, exclude = ROWWISE_FP32_KINDS[kind]
    graph = onnx.load(str(fp32), load_external_data=False).graph
    keep = [n.name for n, _ in _constant_matmuls(graph)
            if any(p in n.name for p in include) and not (exclude and exclude in n.name)]
    if not keep:
        raise RuntimeError(f"{fp32}: no MatMul named like {include}")
    done = quantize_planned(str(fp32), str(out), c.calibration_texts(fp32, data_dir), keep_fp32=keep)
    return dict(q.INT8_SCHEMES["rowwise"].settings(), **done, config=kind)


def gptq_weights_only(fp32: Path, out: Path, data_dir: Path, *, bits: int) -> int:
    """``fp32`` with every constant-weight MatMul's weights rounded by GPTQ to ``bits`` and stored dequantized.

    A matrix read by several products (none in BERT) is rounded once, with its first reader's ``X^T X``.
    """
    import onnx
    from onnx import numpy_helper

    from mlbert.exporter.calibrate import input_statistics
    from mlbert.exporter.gptq import gptq

    model = onnx.load(str(fp32))
    products = _constant_matmuls(model.graph)
    stats = input_statistics(str(fp32), c.calibration_texts(fp32, data_dir), sorted({n.input[0] for n, _ in products}))
    done = set()
    for node, matrix in products:
        if matrix.name in done:
            continue
        values, scale = gptq(numpy_helper.to_array(matrix), stats[node.input[0]].hessian, bits)
        matrix.CopyFrom(numpy_helper.from_array((values.astype(np.float32) * scale[None, :]), matrix.name))
        done.add(matrix.name)
    onnx.save(model, str(out))
    return len(done)


def matmul_nbits(fp32: Path, out: Path, *, bits: int, block: int, accuracy_level: int) -> int:
    """Every constant-weight MatMul of ``fp32`` as ``MatMulNBits`` (symmetric, a scale per ``block`` input
    channels of each output column, stored unsigned around 2^(bits-1), the operator's default zero point)."""
    import onnx
    from onnx import helper, numpy_helper

    from mlbert.exporter.rowwise import Rewrite, apply_rewrite

    if bits != 8:
        raise ValueError("only 8-bit weights are packed here")
    model = onnx.load(str(fp32))
    levels = 2 ** (bits - 1) - 1
    rewrite = Rewrite()
    for index, (node, matrix) in enumerate(_constant_matmuls(model.graph)):
        weight = numpy_helper.to_array(matrix).astype(np.float64)  # (K, N)
        k, n = weight.shape
        blocks = -(-k // block)
        padded = np.zeros((n, blocks * block))
        padded[:, :k] = weight.T
        padded = padded.reshape(n, blocks, block)
        scale = np.abs(padded).max(axis=2) / levels
        scale[scale == 0] = 1.0
        name = f"mlb_nbits{index}"
        packed = rewrite.const(f"{name}_b", (np.clip(np.round(padded / scale[:, :, None]), -levels, levels)
                                             + 2 ** (bits - 1)).astype(np.uint8))
        scales = rewrite.const(f"{name}_s", scale.reshape(-1).astype(np.float32))
        rewrite.nodes[node.output[0]] = [helper.make_node(
            "MatMulNBits", [node.input[0], packed, scales], list(node.output), name=name,
            domain="com.microsoft", K=k, N=n, bits=bits, block_size=block, accuracy_level=accuracy_level)]
    apply_rewrite(model, rewrite)
    onnx.save(model, str(out))
    return len(rewrite.nodes)


def quantize_leaving_ffn_output(fused: Path, out: Path) -> None:
    """The portable scheme's settings with each layer's feed-forward output matrix left in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = [n.name for n in onnx.load(str(fused), load_external_data=False).graph.node
            if n.op_type == "MatMul" and "/output/dense/" in n.name and "/attention/" not in n.name]
    if not keep:
        raise RuntimeError(f"{fused}: no feed-forward output MatMul found by name")
    quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     nodes_to_exclude=keep, extra_options={"MatMulConstBOnly": True,
                                                           "DefaultTensorType": onnx.TensorProto.FLOAT})


def quantize_static_qdq(fp32: Path, out: Path, data_dir: Path, method: str = "MinMax") -> None:
    """Static QDQ int8 (signed 7-bit per-channel weights), activation ranges from dev rows by ``method``."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from mlbert.runtime.encoder import Encoder

    header = c.read_header(fp32)
    encoder = Encoder(header)
    texts = header.preprocessing.apply(c.read_tsv_texts(data_dir / "dev.tsv.gz", limit=CALIBRATION_ROWS))
    # The histogram calibrators (percentile, entropy) stack every batch's outputs into one array: their
    # batches get one width and 32 rows each (a last, shorter batch is left out); MinMax's keep their own.
    stacked = method != "MinMax"
    width = int(encoder.encode(texts).lengths.max())
    feeds = []
    for i in range(0, len(texts) - (len(texts) % 32 if stacked else 0), 32):
        chunk = encoder.encode(texts[i:i + 32])
        batch = chunk.batch(np.arange(len(chunk)), width if stacked else int(chunk.lengths.max()))
        feed = {"input_ids": batch.input_ids.astype(np.int64), "attention_mask": batch.attention_mask.astype(np.int64)}
        if "token_type_ids" in header.input_names:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        feeds.append(feed)
    if not feeds:
        raise ValueError(f"{data_dir / 'dev.tsv.gz'}: fewer than 32 texts to calibrate {method} ranges on")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> Any:
            return next(self.items, None)

    options = {"CalibPercentile": PERCENTILE} if method == "Percentile" else {}
    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                    calibrate_method=getattr(CalibrationMethod, method), op_types_to_quantize=["MatMul"],
                    extra_options=options)
