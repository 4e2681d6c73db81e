"""Training report: hand-checked per-label numbers, valid PNGs with one entry per label, no crash on gaps."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from mlbert.modelfile import CheckpointConfig
from mlbert.trainer.metrics import multilabel_metrics
from mlbert.trainer.report.training import write_training_report
from mlbert.trainer.report.metric_sets import metric_sets
from mlbert.decisions import THRESHOLD_GRID
from mlbert.trainer.report.plots import PLOTS_DIR, PLOTS_INDEX, f1_threshold_curves, label_scores

LABELS = ["anger", "joy", "sadness", "surprise", "fear", "love", "optimism"]
THRESHOLDS = [0.3, 0.4, 0.6, 0.5, 0.45, 0.55, 0.35]


def png_size(path: Path):
    """(width, height) from the PNG signature and IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert data[-8:-4] == b"IEND", f"{path} is truncated"
    return width, height


def test_label_scores_and_threshold_curves_by_hand():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.3], [0.1, 0.8]])
    s = label_scores(y, p, [0.5, 0.25])
    # label 0 at 0.5: predicted rows 0 and 2 -> TP 1, FP 1, FN 1; label 1 at 0.25: rows 1, 2, 3 -> TP 2, FP 1, FN 0
    assert s["precision"] == pytest.approx([0.5, 2 / 3])
    assert s["recall"] == pytest.approx([0.5, 1.0])
    assert s["f1"] == pytest.approx([0.5, 0.8])
    assert list(s["support"]) == [2, 2]
    curves = f1_threshold_curves(y, p)
    assert curves.shape == (2, len(THRESHOLD_GRID))
    at = {round(float(t), 2): i for i, t in enumerate(THRESHOLD_GRID)}
    assert curves[0, at[0.35]] == pytest.approx(2 * 2 / (2 * 2 + 1))  # rows 0,1,2 predicted: TP 2, FP 1
    assert curves[0, at[0.95]] == pytest.approx(0.0)  # nothing predicted
    assert curves[1, at[0.5]] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # rows 1, 3: TP 1, FP 1, FN 1
    # The curve agrees with the trainer's metrics at every threshold it is drawn for.
    for t in (0.15, 0.5, 0.65):
        expected = multilabel_metrics(y, p, t, ["x", "y"])["per_label"]["y"]["f1"]
        assert curves[1, at[t]] == pytest.approx(expected)


def _results(y, p):
    return {
        "at_0.5": multilabel_metrics(y, p, 0.5, LABELS),
        "tuned": multilabel_metrics(y, p, THRESHOLDS, LABELS),
        "by_objective": {"jaccard": multilabel_metrics(y, p, THRESHOLDS, LABELS),
                         "macro-f1": multilabel_metrics(y, p, 0.4, LABELS)},
    }


def make_training_output(folder: Path, seed: int = 0) -> dict:
    """The files mlb-train leaves beside a checkpoint, with synthetic numbers."""
    rng = np.random.default_rng(seed)
    n, k = 60, len(LABELS)
    folder.mkdir(parents=True, exist_ok=True)
    CheckpointConfig(
        label_names=LABELS, thresholds=THRESHOLDS, threshold_objective="jaccard",
        provenance={"command": "mlb-train --train data/goemotions/train.tsv -o run", "base_model": "/x/all-MiniLM-L6-v2",
                    "data": {"train": {"source": "data/goemotions/train.tsv", "rows": 100}}},
    ).save(str(folder))
    y = (rng.random((n, k)) < 0.3).astype(np.int8)
    p = np.clip(0.45 * y + 0.6 * rng.random((n, k)), 0, 1).astype(np.float32)
    metrics = {"label_names": LABELS, "threshold_objective": "jaccard", "thresholds": THRESHOLDS,
               "validation": _results(y, p), "test": _results(y[:40], p[:40]), "training": {"train_rows": 100}}
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    history = []
    for epoch in (1, 2, 3):
        history.append({"loss": 0.7 / epoch, "learning_rate": 1e-4, "epoch": epoch - 0.5, "step": 10 * epoch - 5})
        history.append({"eval_loss": 0.8 / epoch, "eval_samples_jaccard": 0.3 + 0.1 * epoch,
                        "eval_micro_f1": 0.4 + 0.1 * epoch, "eval_macro_f1": 0.2 + 0.1 * epoch,
                        "epoch": float(epoch), "step": 10 * epoch})
    history.append({"train_runtime": 12.0, "train_loss": 0.4, "epoch": 3.0, "step": 30})
    (folder / "history.json").write_text(json.dumps(history), encoding="utf-8")
    train = (rng.random((100, k)) < 0.3).astype(np.int64)
    np.savez_compressed(folder / "eval_predictions.npz", validation_probabilities=p, validation_labels=y,
                        test_probabilities=p[:40], test_labels=y[:40], train_label_counts=train.sum(axis=0),
                        train_cooccurrence=train.T @ train)
    return metrics


def test_training_report_plots_are_pngs_with_one_entry_per_label(tmp_path):
    out = tmp_path / "run"
    make_training_output(out)
    path = Path(write_training_report(str(out)))
    assert path == out / "report.md"
    text = path.read_text(encoding="utf-8")
    assert "Not in this report" not in text  # nothing was missing
    plots = json.loads((out / PLOTS_DIR / PLOTS_INDEX).read_text())
    kinds = [p["kind"] for p in plots]
    assert kinds.count("f1_per_label") == 2 and kinds.count("f1_vs_threshold") == 2  # validation and test
    assert kinds.count("history") == 1 and kinds.count("cooccurrence") == 1
    for plot in plots:
        file = out / PLOTS_DIR / plot["file"]
        assert png_size(file) == (plot["width"], plot["height"])
        assert f"]({PLOTS_DIR}/{plot['file']})" in text  # linked from the report
        if plot["kind"] == "f1_per_label":
            assert sorted(plot["labels"]) == sorted(LABELS)
            assert plot["n_bars"] == 2 * len(LABELS)  # 0.5 and tuned for each label
        elif plot["kind"] == "f1_vs_threshold":
            assert plot["labels"] == LABELS and plot["n_axes"] == len(LABELS)  # one small multiple per label
        elif plot["kind"] == "cooccurrence":
            assert plot["labels"] == LABELS and plot["n_axes"] == 1
        else:
            assert plot["labels"] == ["samples_jaccard", "micro_f1", "macro_f1"] and plot["n_axes"] == 2
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("<img ") == len(plots)
    assert (out / "README.md").exists()  # the model card comes with the report


def test_training_report_tables_carry_metrics_json_numbers(tmp_path):
    out = tmp_path / "run"
    metrics = make_training_output(out)
    text = Path(write_training_report(str(out))).read_text(encoding="utf-8")
    summary = next(line for line in text.splitlines() if line.startswith("| samples Jaccard |"))
    cells = [c.strip() for c in summary.strip("|").split("|")]
    assert cells[1:] == [f"{metrics[s][k]['samples_jaccard']:.3f}"
                         for s in ("validation", "test") for k in ("at_0.5", "tuned")]
    # The per-label table on the test set: support and F1 at the saved thresholds.
    joy = metrics["test"]["tuned"]["per_label"]["joy"]
    section = text.split("## Per-label results on the test set")[1]
    row = next(line for line in section.splitlines() if line.startswith("| joy |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == str(joy["support"]) and cells[5] == f"{joy['f1']:.3f}"


def test_report_with_missing_files_still_writes_what_it_can(tmp_path):
    out = tmp_path / "run"
    make_training_output(out)
    (out / "history.json").unlink()
    (out / "eval_predictions.npz").write_bytes(b"not a zip file")
    text = Path(write_training_report(str(out))).read_text(encoding="utf-8")
    assert "`history.json` is missing" in text
    assert "`eval_predictions.npz` could not be read" in text
    assert "| samples Jaccard |" in text  # metrics.json was still used
    assert not (out / PLOTS_DIR / "history.png").exists()


def test_report_on_an_empty_folder_does_not_raise(tmp_path):
    text = Path(write_training_report(str(tmp_path))).read_text(encoding="utf-8")
    for name in ("mlb.json", "metrics.json", "history.json", "eval_predictions.npz"):
        assert f"`{name}`" in text


def test_metric_sets_finds_nested_and_prefixed_metrics():
    sets = metric_sets({"test": {"tuned": {"micro_f1": 0.5, "per_label": {"x": {"micro_f1": 1}}},
                                 "by_objective": {"jaccard": {"micro_f1": 0.1}}},
                        "eval_micro_f1": 0.25, "eval_samples_jaccard": 0.2})
    assert sets["test / tuned"]["micro_f1"] == 0.5
    assert sets["eval"] == {"micro_f1": 0.25, "samples_jaccard": 0.2}
    assert not any("by_objective" in k or "per_label" in k for k in sets)
