"""mlb-eval end to end on tiny models: ONNX and its source checkpoint agree; comparisons, reports, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mlbert.trainer.eval_cli import main
from mlbert.trainer.evaluate import load_eval_model

from test_report import png_size

TEXTS = [
    "i am so happy today", "this is terrible and i hate it", "wow i did not see that", "i cry",
    "what a great day 😂", "oh no @someone http://example.com lost", "love love love", "mad mad mad",
    "i am scared and afraid", "hello world", "yes we win", "that was awful", "not very good",
    "smile and laugh 👍🏽", "tomorrow is a bad day", "she was shocked", "he is glad", "they lost it",
    "you love me", "this is it", "oh wow what a surprise", "sad sad day", "great", "i hate tomorrow",
]
# Columns in another order than the model's labels (anger, joy, sadness, surprise): matched by name.
COLUMNS = ["surprise", "joy", "anger", "sadness"]


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    labels = (rng.random((len(TEXTS), len(COLUMNS))) < 0.4).astype(int)
    labels[0] = [0, 1, 0, 0]
    labels[1] = [1, 0, 1, 1]  # every label has both classes
    path = tmp_path_factory.mktemp("eval") / "labelled.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"] + COLUMNS)
        for text, row in zip(TEXTS, labels):
            writer.writerow([text] + list(row))
    return path


@pytest.fixture(scope="module")
def pair(varied_onnx) -> tuple:
    """(checkpoint folder, the ONNX file exported from it)."""
    return varied_onnx.parent / "checkpoint", varied_onnx


def run(args, capsys):
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_onnx_and_its_checkpoint_agree(pair, data_csv, tmp_path, capsys):
    checkpoint, onnx_file = pair
    # Library level: the same probabilities (preprocessing applied on both paths: emoji, mentions, URLs).
    p_ckpt = load_eval_model(str(checkpoint)).predict_proba(TEXTS)
    p_onnx = load_eval_model(str(onnx_file)).predict_proba(TEXTS)
    assert np.abs(p_ckpt - p_onnx).max() < 1e-4
    assert p_ckpt.std() > 0.05  # the varied model tells texts apart, so agreement means something
    assert np.abs(p_ckpt - 0.5).min() > 1e-3  # no row sits on the threshold, so thresholded metrics must match
    results = []
    for model in (checkpoint, onnx_file):
        code, out, err = run([model, data_csv, "--json", tmp_path / f"{model.name}.json", "-q"], capsys)
        assert code == 0, err
        assert "samples Jaccard" in out and err == ""
        results.append(json.loads((tmp_path / f"{model.name}.json").read_text()))
    a, b = (r["models"][0] for r in results)
    assert a["kind"] == "checkpoint" and b["kind"] == "onnx"
    for setting in ("at_model_thresholds", "at_0.5"):
        for key in ("samples_jaccard", "micro_f1", "macro_f1", "exact_match"):
            assert a[setting][key] == b[setting][key], (setting, key)
        for key in ("micro_roc_auc", "macro_roc_auc"):
            assert a[setting][key] == pytest.approx(b[setting][key], abs=1e-3)
        assert a[setting]["per_label"].keys() == b[setting]["per_label"].keys()
    assert results[0]["rows"] == len(TEXTS)
    # The data's columns were matched by name: supports follow the label, not the column position.
    with open(data_csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for name in COLUMNS:
        assert a["at_0.5"]["per_label"][name]["support"] == sum(int(r[name]) for r in rows)


def test_two_models_side_by_side_with_deltas_and_report(pair, data_csv, tmp_path, capsys):
    checkpoint, onnx_file = pair
    report = tmp_path / "report"
    code, out, err = run([checkpoint, onnx_file, data_csv, "--json", "-", "--report", report], capsys)
    assert code == 0, err
    data = json.loads(out)  # --json - : stdout holds only JSON
    assert [m["kind"] for m in data["models"]] == ["checkpoint", "onnx"]
    for key, value in data["deltas_b_minus_a"]["at_model_thresholds"].items():
        if key != "per_label_f1":
            assert value == pytest.approx(0.0, abs=1e-3), key
    assert f"Scored {len(TEXTS)} rows" in err
    agreement = data["row_agreement"]  # an ONNX file and its checkpoint: every row keeps its labels
    assert agreement["rows"] == agreement["same_label_set"] == len(TEXTS) and agreement["share"] == 1.0
    assert agreement["max_abs_score_diff"] < 1e-4
    text = (report / "report.md").read_text(encoding="utf-8")
    assert "Per-label results" in text
    plots = json.loads((report / "report_plots" / "plots.json").read_text())
    per_label = [p for p in plots if p["kind"] == "f1_per_label"]
    assert len(per_label) == 2  # one per model
    for plot in plots:
        assert png_size(report / "report_plots" / plot["file"]) == (plot["width"], plot["height"])
        assert len(plot["labels"]) == 4
    assert {p["n_axes"] for p in plots if p["kind"] == "f1_vs_threshold"} == {4}


def test_table_on_stdout_for_one_model(pair, data_csv, capsys):
    code, out, err = run([pair[1], data_csv], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{data_csv}: {len(TEXTS)} rows, 4 labels"
    assert any(line.split()[:2] == ["samples", "Jaccard"] for line in lines)
    assert [line.split()[0] for line in lines[-4:]] == ["anger", "joy", "sadness", "surprise"]


def test_list_layout_with_a_label_that_never_occurs(pair, tmp_path, capsys):
    path = tmp_path / "list.jsonl"
    rows = [{"text": t, "labels": ["joy"] if i % 2 else ["anger", "sadness"]} for i, t in enumerate(TEXTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, out, err = run([pair[1], path, "--json", tmp_path / "r.json", "-q"], capsys)
    assert code == 0, err
    per_label = json.loads((tmp_path / "r.json").read_text())["models"][0]["at_0.5"]["per_label"]
    assert per_label["surprise"]["support"] == 0
    assert per_label["joy"]["support"] == len(TEXTS) // 2


def test_label_mismatch_is_one_line_naming_both_sides(pair, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("text,anger,happy,sadness,surprise\ni am happy,0,1,0,0\ni am mad,1,0,0,0\n", encoding="utf-8")
    code, out, err = run([pair[1], path], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"Error: {path}: labels do not match")
    assert "missing from the data: joy" in err and "does not know: happy" in err


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "nothing.onnx", "model file not found"),
    (lambda d: (d / "junk.onnx").write_bytes(b"\x00garbage" * 10) and d / "junk.onnx", "not a readable ONNX model"),
    (lambda d: d, "no config.json"),
])
def test_bad_models_are_one_line_errors(make, expected, data_csv, tmp_path, capsys):
    code, out, err = run([make(tmp_path), data_csv], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("Error: ") and expected in err


def test_usage(capsys):
    code, out, err = run(["a", "b", "c", "d"], capsys)
    assert code == 2 and "give MODEL DATA or MODEL MODEL2 DATA" in err
    code, out, _ = run(["--help"], capsys)
    first_block = out.split("on labelled data.", 1)[1].strip().split("\n\n")[0]
    assert code == 0 and "mlb-eval model.onnx data/goemotions/test.tsv.gz" in first_block  # help opens with an example
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and "mlb-eval" in out


def test_plain_hf_checkpoint_without_mlb_json(tiny_checkpoint, data_csv, tmp_path, capsys):
    import shutil

    folder = tmp_path / "plain"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "mlb.json").unlink()
    model = load_eval_model(str(folder))
    assert model.label_names == ["anger", "joy", "sadness", "surprise"]  # from config.json id2label
    assert model.thresholds == [0.5] * 4 and model.preprocessing.is_identity
    code, out, err = run([folder, data_csv, "--json", tmp_path / "r.json", "-q"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())["models"][0]
    assert result["at_model_thresholds"]["micro_f1"] == result["at_0.5"]["micro_f1"]


def test_single_label_checkpoint_is_refused(tiny_checkpoint, data_csv, tmp_path, capsys):
    import shutil

    folder = tmp_path / "single"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["problem_type"] = "single_label_classification"
    (folder / "config.json").write_text(json.dumps(config))
    code, out, err = run([folder, data_csv], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "single_label_classification model, not a multi-label (sigmoid) classifier" in err


def test_the_builtin_model_by_name(tmp_path, capsys):
    """``mlb-eval goemotions DATA``: the built-in file, as quickstart.sh compares a new model with it."""
    fixtures = Path(__file__).parent / "fixtures"
    out = tmp_path / "eval.json"
    names = Path(__file__).parent.parent / "data" / "goemotions" / "emotions.txt"
    code, _, stderr = run(["goemotions", str(fixtures / "goemotions_sample.tsv"), "--label-names", str(names),
                           "--json", str(out), "--quiet"], capsys)
    assert code == 0, stderr
    (model,) = json.loads(out.read_text())["models"]
    assert model["kind"] == "onnx" and len(model["label_names"]) == 28 and model["at_model_thresholds"]["rows"] == 24


def test_two_models_row_agreement_counts_the_rows_whose_labels_moved(pair, varied_int8_onnx, data_csv, capsys):
    """The int8 file (batch-dependent scheme, tiny random model) moves some rows: mlb-eval says how many and how far,
    row by row, from the two models' own probabilities at their own thresholds (labels matched by name)."""
    from mlbert.decisions import decide

    checkpoint, _ = pair
    a, b = load_eval_model(str(checkpoint)), load_eval_model(str(varied_int8_onnx))
    pa, pb = a.predict_proba(TEXTS), b.predict_proba(TEXTS)
    same = (decide(pa, a.thresholds) == decide(pb, b.thresholds)).all(axis=1)
    code, out, err = run([checkpoint, varied_int8_onnx, data_csv, "--json", "-", "-q"], capsys)
    assert code == 0, err
    agreement = json.loads(out)["row_agreement"]
    assert agreement["same_label_set"] == int(same.sum()) and agreement["rows"] == len(TEXTS)
    assert agreement["max_abs_score_diff"] == pytest.approx(float(np.abs(pa - pb).max()), abs=1e-6)
    assert agreement["max_abs_score_diff"] > 1e-3  # int8 is not the checkpoint: the figures are not trivially 0
    code, out, err = run([checkpoint, varied_int8_onnx, data_csv], capsys)
    line = next(l for l in out.splitlines() if l.startswith("Row agreement, B against A"))
    assert f"({len(TEXTS) - int(same.sum())} of {len(TEXTS)} changed)" in line
