"""The Python API: mlbert.load(...) -> Classifier, the object mlb-batch itself runs."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

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
    with pytest.raises(mlbert.ItemError, match=r"^texts\[1\]: the value is null$"):
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


# ---- one contract with mlb-batch: bad items, thresholds, inputs, output shapes ---------------------------

# Values mlb-batch turns into error records (as JSON lines {"text": value}), with the reason it writes;
# the API names a list item "the value" where mlb-batch names the column.
BAD_VALUES = [("", "empty text"), (None, "the value is null"), ("   \t ", "empty text"),
              ("\x00\x01\x7f", "empty text"), ({"a": "so happy"}, "the value is not text (a Python dict)"),
              (True, "the value is not text (a Python bool)"), (float("nan"), "the value is null")]


def _mlb_batch_errors(tmp_path, golden_model, values):
    """What mlb-batch writes for JSON lines {"text": value}: the error of each row, None for a labelled one."""
    source = tmp_path / "values.jsonl"
    source.write_text("".join(json.dumps({"text": v}) + "\n" for v in values), encoding="utf-8")
    result = CliRunner().invoke(cli, [str(source), "-m", str(golden_model), "--device", "cpu"], catch_exceptions=False)
    return [json.loads(line).get("error") for line in result.stdout.splitlines()]


def test_an_item_mlb_batch_calls_an_error_is_an_error_naming_its_position(golden_model, tmp_path):
    """predict([""]) used to return labels where mlb-batch writes "empty text"."""
    clf = mlbert.load(str(golden_model), device="cpu")
    with pytest.raises(mlbert.ItemError, match=r"^texts: empty text$"):
        clf.predict("")
    for value, reason in BAD_VALUES:
        for call in (clf.predict, clf.predict_proba):
            with pytest.raises(mlbert.ItemError) as caught:
                call(["so happy", "so sad", value])
            assert str(caught.value) == f"texts[2]: {reason}" and caught.value.position == 2
            assert isinstance(caught.value, ValueError) and isinstance(caught.value, mlbert.MlbError)
    with pytest.raises(mlbert.ItemError, match=r"^texts\[1\]: empty text \(and 2 more items that cannot be "
                                               r"classified; errors=\"record\" gives each an error entry\)$") as caught:
        clf.predict(["fine", "", None, "ok", " "])
    sent = pickle.loads(pickle.dumps(caught.value))  # as a Spark or Ray worker sends it back
    assert (str(sent), sent.position, sent.reason, sent.others) == (str(caught.value), 1, "empty text", 2)
    # The same values through mlb-batch: error records exactly where the API refuses, the same empty-text reason.
    written = _mlb_batch_errors(tmp_path, golden_model, ["so happy"] + [v for v, _ in BAD_VALUES[:5]] + [42])
    assert written[0] is None and written[-1] is None  # a number is classified as its text, by both
    assert written[1:6] == ["empty text", "'text' is null", "empty text", "empty text", "'text' is not text (a JSON dict)"]
    assert clf.predict([42]) == clf.predict(["42"])


def test_errors_record_gives_an_entry_per_bad_item_and_nan_rows(golden_model):
    clf = mlbert.load(str(golden_model), device="cpu")
    texts = ["i am so happy today !", "", "what a terrible awful day", None, "\x00okay\x07 then"]
    entries = clf.predict(texts, errors="record")
    assert entries[1] == {"error": "empty text"} and entries[3] == {"error": "the value is null"}
    good = clf.predict([texts[0], texts[2], "okay then"])  # control characters are dropped, as mlb-batch does
    assert [entries[0], entries[2], entries[4]] == good
    probabilities = clf.predict_proba(texts, errors="record")
    assert probabilities.shape == (5, 4) and probabilities.dtype == np.float32
    assert np.isnan(probabilities[[1, 3]]).all() and not np.isnan(probabilities[[0, 2, 4]]).any()
    np.testing.assert_array_equal(probabilities[[0, 2, 4]], clf.predict_proba([texts[0], texts[2], "okay then"]))
    assert clf.predict_proba("", errors="record").shape == (4,) and clf.predict("", errors="record") == {"error": "empty text"}
    pipeline = clf.predict(texts, output="pipeline", errors="record")
    assert pipeline[1] == {"error": "empty text"} and len(pipeline[0]) == 4
    with pytest.raises(mlbert.UsageError, match="errors='ignore'"):
        clf.predict(["fine"], errors="ignore")


def test_containers_whose_items_are_not_the_texts_are_refused(golden_model):
    """predict({"a": ...}) used to classify the dict's keys."""
    clf = mlbert.load(str(golden_model), device="cpu")
    refused = [({"a": "so happy"}, "whose items are its keys"), ({"so happy"}, "no order"),
               (b"so happy", "decode it"), (np.array([["a", "b"]]), "2-D numpy array"), (42, "not a int")]
    for texts, message in refused:
        with pytest.raises(mlbert.UsageError, match=message) as caught:
            clf.predict(texts)
        assert isinstance(caught.value, ValueError)
    expected = clf.predict_proba(["so happy", "so sad"])
    for same in (("so happy", "so sad"), np.array(["so happy", "so sad"]), (t for t in ["so happy", "so sad"])):
        np.testing.assert_array_equal(clf.predict_proba(same), expected)
    assert clf.predict([]) == [] and clf.predict_proba([]).shape == (0, 4)
    with pytest.raises(mlbert.UsageError, match="text_column= picks a pandas DataFrame's column"):
        clf.predict(["so happy"], text_column="text")


def test_thresholds_one_number_per_label_dict_validated(golden_model, tmp_path):
    """thresholds={"joy": 0.3} used to be a bare TypeError, and 1.5 was taken."""
    clf = mlbert.load(str(golden_model), device="cpu")
    texts = TEXTS[:3]
    joy_always = clf.predict(texts, thresholds={"joy": 0.0})
    assert all("joy" in r["labels"] for r in joy_always)
    model_labels = clf.predict(texts)
    assert [[n for n in r["labels"] if n != "joy"] for r in joy_always] == \
           [[n for n in r["labels"] if n != "joy"] for r in model_labels]  # the others keep the model's
    assert clf.predict(texts, thresholds=[0.0, 1.0, 1.0, 1.0]) == clf.predict(texts, thresholds={"anger": 0.0, "joy": 1.0,
                                                                                                  "sadness": 1.0, "surprise": 1.0})
    # The same override through mlb-batch's --threshold gives the same labels.
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, [str(tmp_path / "in.txt"), "-m", str(golden_model), "--device", "cpu",
                                      "--threshold", "joy=0.0"], catch_exceptions=False)
    assert [json.loads(line)["labels"] for line in result.stdout.splitlines()] == [r["labels"] for r in joy_always]
    refused = [(1.5, r"thresholds = 1.5: a threshold is a probability between 0 and 1"),
               ({"joy": -0.1}, r"thresholds\['joy'\] = -0.1: a threshold is a probability between 0 and 1"),
               (float("nan"), "between 0 and 1"), ({"fear": 0.3}, r"no label 'fear' \(labels: anger, joy, sadness, surprise\)"),
               ("0.3", "give a number"), ({"joy": "0.3"}, "not a str"), (True, "not a bool"),
               ([0.5, 0.5], "2 numbers for 4 labels"), ([0.5, 0.5, 0.5, 2], r"thresholds\[3\] = 2")]
    for thresholds, message in refused:
        with pytest.raises(mlbert.UsageError, match=message):
            clf.predict(texts, thresholds=thresholds)
    with pytest.raises(mlbert.UsageError, match="between 0 and 1"):
        mlbert.load(str(golden_model), device="cpu", thresholds={"joy": 7})
    assert mlbert.load(str(golden_model), device="cpu", thresholds={"joy": 0.25}).thresholds[1] == 0.25


def test_pipeline_output_lists_every_label_highest_first(golden_model):
    clf = mlbert.load(str(golden_model), device="cpu")
    probabilities = clf.predict_proba(TEXTS)
    results = clf.predict(TEXTS, output="pipeline")
    assert isinstance(results, list) and len(results) == len(TEXTS)
    for row, p in zip(results, probabilities):
        assert all(set(d) == {"label", "score"} and type(d["score"]) is float for d in row)
        assert [d["label"] for d in row] == [clf.label_names[j] for j in np.argsort(-p, kind="stable")]
        assert [d["score"] for d in row] == sorted(p.tolist(), reverse=True)
    assert [row[:2] for row in results] == clf.predict(TEXTS, output="pipeline", top_k=2)
    assert clf.predict(TEXTS[0], output="pipeline") == results[0]  # one str: one flat list, as the pipeline
    for bad in ({"thresholds": 0.3}, {"scores": False}):
        with pytest.raises(mlbert.UsageError, match="apply to output='records'"):
            clf.predict(TEXTS, output="pipeline", **bad)
    with pytest.raises(mlbert.UsageError, match="output='dicts'"):
        clf.predict(TEXTS, output="dicts")


def test_the_api_never_imports_pandas():
    """pandas is not a runtime dependency: lists in, numpy out, and pandas stays out of sys.modules."""
    code = ("import sys, mlbert; from conftest import GOLDEN_MODEL; clf = mlbert.load(str(GOLDEN_MODEL), 'cpu'); "
            "clf.predict(['so happy', '']*2, errors='record'); clf.predict_proba(['so happy']); "
            "print('pandas' in sys.modules)")
    tests = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tests,
                         env={**os.environ, "PYTHONPATH": tests})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
