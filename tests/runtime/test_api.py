"""The Python API: mlbert.load(...) -> Classifier, the object mlb-batch itself runs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import mlbert
from mlbert.batch.cli import cli

TEXTS = ["i am so happy today !", "what a terrible awful day", "😂 face with tears of joy", "@someone http://x.io no"]


def test_predict_and_predict_proba_match_mlb_batch(golden_model, golden, tmp_path):
    clf = mlbert.load(str(golden_model), device="cpu")
    assert clf.label_names == golden["label_names"]
    assert clf.thresholds.tolist() == golden["thresholds"] and clf.provider == "CPUExecutionProvider"
    probabilities = clf.predict_proba(TEXTS)
    assert probabilities.shape == (len(TEXTS), 4) and probabilities.dtype == np.float32
    assert probabilities.std() > 0.05  # the golden model tells the texts apart
    records = clf.predict(TEXTS)
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, [str(tmp_path / "in.txt"), "-m", str(golden_model), "--device", "cpu"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in result.stdout.splitlines()]
    for record, row, p in zip(records, written, probabilities):
        assert record["labels"] == row["labels"]  # same labels, highest score first
        assert [round(v, 4) for v in record["scores"].values()] == list(row["scores"].values())
        at_threshold = dict(zip(clf.label_names, clf.thresholds))
        assert record["labels"] == [n for n in sorted(clf.label_names, key=lambda n: -record["scores"][n])
                                    if record["scores"][n] >= at_threshold[n]]
        np.testing.assert_allclose(list(record["scores"].values()), p, rtol=0, atol=1e-7)


def test_preprocessing_happens_inside(golden_model):
    """The model was trained with emoji as words and @user: the API applies it, callers do not."""
    clf = mlbert.load(str(golden_model), device="cpu")
    raw = clf.predict_proba(["😂 great"])
    by_hand = clf.predict_proba([clf.header.preprocessing.apply_one("😂 great")])
    np.testing.assert_array_equal(raw, by_hand)
    assert clf.header.preprocessing.apply_one("😂 great") != "😂 great"


def test_single_text_bytes_thresholds_top_k(golden_model):
    clf = mlbert.load(golden_model.read_bytes(), device="cpu")  # a model's bytes, as a Ray actor loads it
    one = clf.predict_proba(TEXTS[0])
    assert one.shape == (len(clf.label_names),)
    np.testing.assert_array_equal(one, clf.predict_proba(TEXTS)[0])
    record = clf.predict(TEXTS[0], thresholds=0.0, top_k=2)
    assert len(record["labels"]) == 2 and list(record["scores"]) == record["labels"]
    assert clf.predict(TEXTS[0], thresholds=1.0)["labels"] == []
    assert "scores" not in clf.predict(TEXTS[0], scores=False)


def test_chunks_give_the_same_numbers(golden_model):
    clf = mlbert.load(str(golden_model), device="cpu")
    texts = TEXTS * 5
    np.testing.assert_allclose(clf.predict_proba(texts, chunk_size=3), clf.predict_proba(texts), atol=1e-6)


def test_bad_input_and_bad_model_are_one_line_errors(golden_model, tmp_path):
    clf = mlbert.load(str(golden_model), device="cpu")
    with pytest.raises(mlbert.MlbError, match=r"texts\[1\] is not a string but NoneType"):
        clf.predict_proba(["fine", None])
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(mlbert.MlbError, match="broken.onnx: not a readable ONNX model"):
        mlbert.load(str(tmp_path / "broken.onnx"))


def test_import_is_cheap():
    """``import mlbert`` loads neither onnxruntime nor torch: the CLIs' --help stays fast."""
    code = "import sys, mlbert; print(sorted(m for m in ('onnxruntime', 'torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_golden_rows_through_the_api(golden_model, golden):
    """The PyTorch reference stored with the golden model, reproduced from raw texts by the API."""
    clf = mlbert.load(golden_model, device="cpu")
    rows = golden["rows"]
    probabilities = clf.predict_proba([row["text"] for row in rows])
    np.testing.assert_allclose(probabilities, [row["probabilities"] for row in rows], atol=golden["tolerance"], rtol=0)
    predicted = clf.predict([row["text"] for row in rows])
    assert [sorted(r["labels"]) for r in predicted] == [sorted(row["labels"]) for row in rows]
