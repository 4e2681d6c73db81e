"""The roads issue 25 measured besides the default int8 file compute what they claim to compute.

``benchmarks/int8_handmade.py`` makes the files behind the figures that say how close other roads
come to the row-agreement bar (docs/BENCHMARKS.md): if its MatMulNBits packing, its GPTQ
weights or its choice of products left in fp32 were wrong, those figures would be wrong with
them. So each file is checked against an independent statement of what it should hold: numpy
dequantization, ``exporter.gptq`` called directly, the graph's structure.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

TEXTS = ["I love this so much", "what a terrible idea, honestly", "", "ok", "why would anyone do that?!"] * 3


def _scores(path: Path, texts=TEXTS) -> np.ndarray:
    from mlbert.runtime.classifier import load

    return load(path, "cpu").predict_proba(texts, errors="record")


def _graph(path: Path):
    import onnx

    return onnx.load(str(path)).graph


def _constant_matmuls(path: Path):
    from onnx import numpy_helper

    graph = _graph(path)
    matrices = {i.name: numpy_helper.to_array(i) for i in graph.initializer if len(i.dims) == 2}
    return {n.name: matrices[n.input[1]] for n in graph.node if n.op_type == "MatMul" and n.input[1] in matrices}


def _with_weights(src: Path, dst: Path, weights) -> Path:
    """``src`` with each constant MatMul's weight replaced by ``weights(matrix)``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    read = {n.input[1] for n in model.graph.node if n.op_type == "MatMul"}
    for init in model.graph.initializer:
        if init.name in read and len(init.dims) == 2:
            init.CopyFrom(numpy_helper.from_array(weights(numpy_helper.to_array(init)), init.name))
    onnx.save(model, str(dst))
    return dst


def _dev_folder(tmp_path: Path, texts) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    with gzip.open(data / "dev.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("".join(f"{t}\t0\tid{i}\n" for i, t in enumerate(texts)))
    return data


def _blockwise_8bit(w: np.ndarray, block: int) -> np.ndarray:
    """Symmetric 8-bit weights with a scale per ``block`` input channels of each column (K padded with zeros)."""
    k, n = w.shape
    padded = np.zeros((-(-k // block) * block, n))
    padded[:k] = w
    blocks = padded.T.reshape(n, -1, block)
    scale = np.abs(blocks).max(axis=2, keepdims=True) / 127
    scale[scale == 0] = 1
    return (np.round(blocks / scale) * scale).reshape(n, -1).T[:k].astype(np.float32)


@pytest.mark.parametrize("block", [16, 64])  # 64: wider than the tiny model's 32 channels, so K is padded
def test_matmul_nbits_file_computes_its_blockwise_8bit_weights(varied_onnx, tmp_path, block):
    """accuracy_level 1 (fp32 compute): the MatMulNBits file equals the fp32 graph with the blockwise
    8-bit weights dequantized in numpy; and the weights did move (the comparison could fail)."""
    import int8_handmade

    out = tmp_path / "wonly.onnx"
    count = int8_handmade.matmul_nbits(varied_onnx, out, bits=8, block=block, accuracy_level=1)
    assert count == len(_constant_matmuls(varied_onnx)) == sum(n.op_type == "MatMulNBits" for n in _graph(out).node)
    assert not _constant_matmuls(out), "every constant-weight MatMul is replaced"
    by_hand = _with_weights(varied_onnx, tmp_path / "by-hand.onnx", lambda w: _blockwise_8bit(w, block))
    got, expected, fp32 = _scores(out), _scores(by_hand), _scores(varied_onnx)
    assert np.allclose(got, expected, atol=2e-5, equal_nan=True)
    assert np.nanmax(np.abs(got - fp32)) > 1e-5


def test_matmul_nbits_int8_compute_scores_a_row_alone(varied_onnx, tmp_path):
    """accuracy_level 4 quantizes activations per block of a row: each text gets the same scores alone
    as in the batch (the docs call the file row-independent), and other scores than fp32's."""
    import int8_handmade

    out = tmp_path / "nbits.onnx"
    int8_handmade.matmul_nbits(varied_onnx, out, bits=8, block=32, accuracy_level=4)
    together = _scores(out)
    alone = np.vstack([_scores(out, [t]) for t in TEXTS])
    assert np.allclose(together, alone, atol=1e-5, equal_nan=True)
    assert np.nanmax(np.abs(together - _scores(varied_onnx))) > 1e-5


def test_gptq_weights_only_file_holds_exactly_gptqs_weights(varied_onnx, tmp_path):
    """Each matrix of the gptqw8 file is ``exporter.gptq``'s 8-bit rounding with the X^T X of that matrix's
    own input on the calibration texts, dequantized; and not the fp32 weights."""
    import common as c
    import int8_handmade
    from mlbert.exporter.calibrate import input_statistics
    from mlbert.exporter.gptq import gptq

    data = _dev_folder(tmp_path, [t for t in TEXTS if t])
    out = tmp_path / "gptqw8.onnx"
    assert int8_handmade.gptq_weights_only(varied_onnx, out, data, bits=8) == len(_constant_matmuls(varied_onnx))
    before = _constant_matmuls(varied_onnx)
    inputs = {n.name: n.input[0] for n in _graph(varied_onnx).node if n.name in before}
    stats = input_statistics(str(varied_onnx), c.calibration_texts(varied_onnx, data), sorted(set(inputs.values())))
    after = _constant_matmuls(out)
    assert before.keys() == after.keys()
    for name, w in before.items():
        values, scale = gptq(w, stats[inputs[name]].hessian, 8)
        assert np.array_equal(after[name], values.astype(np.float32) * scale[None, :]), name
        assert not np.array_equal(after[name], w)


@pytest.mark.parametrize("kind", ["ffn2fp32", "qkvfp32"])
def test_rowwise_file_leaves_exactly_one_kind_of_product_in_fp32(varied_onnx, tmp_path, kind):
    """ffn2fp32 keeps the products that read GELU's output (each layer's feed-forward output), not the
    attention output's; qkvfp32 the three that read each layer's attention input. Told by structure."""
    import int8_handmade
    from mlbert.exporter.rowwise_plan import gelu_outputs

    graph = _graph(varied_onnx)
    products = [n for n in graph.node if n.op_type == "MatMul" and n.name in _constant_matmuls(varied_onnx)]
    if kind == "ffn2fp32":
        gelu = gelu_outputs(graph)
        expected = {n.name for n in products if n.input[0] in gelu}
    else:
        readers = {}
        for n in products:
            readers.setdefault(n.input[0], []).append(n.name)
        expected = {name for names in readers.values() if len(names) == 3 for name in names}
    assert expected
    out = tmp_path / f"{kind}.onnx"
    done = int8_handmade.build(kind, varied_onnx, tmp_path / "fused.onnx", out,
                               _dev_folder(tmp_path, [t for t in TEXTS if t]), {})
    kept = {n.name for n in _graph(out).node if n.op_type == "MatMul"} & {n.name for n in products}
    assert kept == expected == set(done["kept_fp32"])
    assert done["quantized_products"] == len(products) - len(expected)
    assert sum(n.op_type == "MatMulIntegerToFloat" for n in _graph(out).node) == len(products) - len(expected)


@pytest.mark.parametrize("key", ["staticpct", "staticent"])
def test_static_histogram_calibrators_get_batches_they_can_stack(varied_onnx, tmp_path, key):
    """Percentile and entropy calibration stack every batch's activations: batches of other widths or
    sizes failed (70 rows: two batches of 32 and one of 6, of other widths). The file is a QDQ file
    whose scores move from fp32's, and an empty text still gets none."""
    import int8_handmade

    data = _dev_folder(tmp_path, ["word " * (1 + i % 9) for i in range(70)])
    out = tmp_path / f"{key}.onnx"
    int8_handmade.build(key, varied_onnx, tmp_path / "fused.onnx", out, data, {})
    ops = [n.op_type for n in _graph(out).node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    scores, fp32 = _scores(out), _scores(varied_onnx)
    empty = np.array([t == "" for t in TEXTS])
    assert np.isnan(scores[empty]).all() and np.isfinite(scores[~empty]).all()
    assert np.nanmax(np.abs(scores - fp32)) > 1e-4


def test_static_histogram_calibration_refuses_too_few_texts(varied_onnx, tmp_path):
    import int8_handmade

    data = _dev_folder(tmp_path, ["a few words"] * 31)
    with pytest.raises(ValueError, match="fewer than 32 texts"):
        int8_handmade.build("staticpct", varied_onnx, tmp_path / "fused.onnx", tmp_path / "x.onnx", data, {})
