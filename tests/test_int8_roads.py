"""The roads issue 25 measured besides the default int8 file compute what they claim to compute.

``benchmarks/int8_handmade.py`` makes the files whose figures say no 8-bit weights could meet the
row-agreement bar (docs/BENCHMARKS.md): if its MatMulNBits packing or its GPTQ weights were
wrong, those figures would be wrong with them. So each file is checked against numpy: the
same graph with the weights it claims, dequantized by hand, must give the same scores.
``rowwise_plan.quantize_planned(keep_fp32=...)`` must leave exactly the named products in float.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

TEXTS = ["I love this so much", "what a terrible idea, honestly", "", "ok", "why would anyone do that?!"] * 3


def _scores(path: Path) -> np.ndarray:
    from mlbert.runtime.classifier import load

    return load(path, "cpu").predict_proba(TEXTS, errors="record")


def _constant_matmuls(path: Path):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    matrices = {i.name: numpy_helper.to_array(i) for i in graph.initializer if len(i.dims) == 2}
    return {n.name: matrices[n.input[1]] for n in graph.node if n.op_type == "MatMul" and n.input[1] in matrices}


def _with_weights(src: Path, dst: Path, weights) -> Path:
    """``src`` with each constant MatMul's weight replaced by ``weights(name, matrix)``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    by_input = {n.input[1]: n.name for n in model.graph.node if n.op_type == "MatMul"}
    for init in model.graph.initializer:
        if init.name in by_input and len(init.dims) == 2:
            init.CopyFrom(numpy_helper.from_array(weights(by_input[init.name], numpy_helper.to_array(init)), init.name))
    onnx.save(model, str(dst))
    return dst


def test_matmul_nbits_file_computes_its_blockwise_8bit_weights(varied_onnx, tmp_path):
    """accuracy_level 1 (fp32 compute): the MatMulNBits file equals the fp32 graph with the blockwise
    8-bit weights dequantized in numpy; and the weights did move (the test could fail)."""
    import onnx

    import int8_handmade

    out = tmp_path / "wonly.onnx"
    count = int8_handmade.matmul_nbits(varied_onnx, out, bits=8, block=16, accuracy_level=1)
    graph = onnx.load(str(out)).graph
    assert count == len(_constant_matmuls(varied_onnx)) == sum(n.op_type == "MatMulNBits" for n in graph.node)
    assert not any(n.op_type == "MatMul" and n.input[1].startswith("mlb_") for n in graph.node)

    def blockwise(_name, w):
        k, n = w.shape
        blocks = w.T.reshape(n, k // 16, 16).astype(np.float64)
        scale = np.abs(blocks).max(axis=2, keepdims=True) / 127
        return (np.round(blocks / scale) * scale).reshape(n, k).T.astype(np.float32)

    by_hand = _with_weights(varied_onnx, tmp_path / "by-hand.onnx", blockwise)
    got, expected, fp32 = _scores(out), _scores(by_hand), _scores(varied_onnx)
    assert np.allclose(got, expected, atol=2e-5, equal_nan=True)
    assert np.nanmax(np.abs(got - fp32)) > 1e-5


def test_gptq_weights_only_file_holds_8bit_columns(varied_onnx, tmp_path):
    """Every weight matrix of the gptqw8 file is an integer multiple (within 127) of one scale per column,
    and differs from the fp32 weights: 8-bit per-column weights, dequantized, nothing else changed."""
    import common as c
    import int8_handmade

    data = tmp_path / "data"
    data.mkdir()
    import gzip

    with gzip.open(data / "dev.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("".join(f"{t}\t0\tid{i}\n" for i, t in enumerate(TEXTS) if t))
    assert c.read_tsv_texts(data / "dev.tsv.gz")
    out = tmp_path / "gptqw8.onnx"
    assert int8_handmade.gptq_weights_only(varied_onnx, out, data, bits=8) > 0
    before, after = _constant_matmuls(varied_onnx), _constant_matmuls(out)
    assert before.keys() == after.keys()
    for name, w in after.items():
        largest = np.abs(w).max(axis=0)  # the largest level used is m * scale, for some m <= 127 (GPTQ may clip)
        for column in range(w.shape[1]):
            steps = [w[:, column] / (largest[column] / m) for m in range(1, 128)]
            assert any(np.allclose(s, np.round(s), atol=1e-3) for s in steps), (name, column)
        assert not np.array_equal(w, before[name])


def test_planned_int8_leaves_the_named_products_in_fp32(varied_onnx, tmp_path):
    import onnx

    from mlbert.exporter.rowwise_plan import quantize_planned

    products = _constant_matmuls(varied_onnx)
    keep = [name for name in products if "/output/dense/" in name and "/attention/" not in name]
    assert keep
    out = tmp_path / "kept.onnx"
    done = quantize_planned(str(varied_onnx), str(out), None, keep_fp32=keep)
    graph = onnx.load(str(out)).graph
    assert done["kept_fp32"] == sorted(keep)
    assert done["quantized_products"] == len(products) - len(keep)
    assert sorted(n.name for n in graph.node if n.op_type == "MatMul" and n.name in products) == sorted(keep)
    assert sum(n.op_type == "MatMulIntegerToFloat" for n in graph.node) == len(products) - len(keep)


@pytest.mark.parametrize("key", ["staticpct"])
def test_static_calibrators_that_stack_batches_get_one_width(varied_onnx, tmp_path, key):
    """Percentile and entropy calibration stack every batch's activations: batches of other widths or
    sizes failed (70 rows: two batches of 32 and one of 6, of other widths)."""
    import gzip

    import int8_handmade

    data = tmp_path / "data"
    data.mkdir()
    with gzip.open(data / "dev.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("".join(f"{'word ' * (1 + i % 9)}\t0\tid{i}\n" for i in range(70)))
    out = tmp_path / f"{key}.onnx"
    int8_handmade.build(key, varied_onnx, tmp_path / "fused.onnx", out, data, {})
    assert out.exists() and np.isfinite(np.nan_to_num(_scores(out), nan=0.0)).all()
