"""The model card: YAML front matter that parses and carries metrics.json's numbers; the body's facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlbert.trainer.model_card import to_yaml, write_model_card

from test_report import LABELS, THRESHOLDS, make_training_output


def split_card(text: str):
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_card_yaml_parses_and_carries_metrics_json_numbers(tmp_path):
    out = tmp_path / "run"
    metrics = make_training_output(out)
    meta, body = split_card(Path(write_model_card(str(out))).read_text(encoding="utf-8"))
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["license"] and meta["language"] == ["en"]
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"  # packaged stand-in mapped to its hub name
    assert meta["datasets"] == ["google-research-datasets/go_emotions"]
    assert "multi-label-classification" in meta["tags"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "run"
    by_split = {r["dataset"]["split"]: r for r in entry["results"]}
    assert set(by_split) == {"test", "validation"}
    assert entry["results"][0]["dataset"]["split"] == "test"  # test results first
    for split, result in by_split.items():
        assert result["task"]["type"] == "text-classification"
        values = {m["name"]: m["value"] for m in result["metrics"]}
        tuned, half = metrics[split]["tuned"], metrics[split]["at_0.5"]
        assert values["Samples Jaccard (tuned thresholds)"] == pytest.approx(tuned["samples_jaccard"], abs=5e-5)
        assert values["Micro F1 (tuned thresholds)"] == pytest.approx(tuned["micro_f1"], abs=5e-5)
        assert values["Macro F1 (threshold 0.5)"] == pytest.approx(half["macro_f1"], abs=5e-5)
        assert values["Exact match (subset accuracy) (tuned thresholds)"] == pytest.approx(tuned["exact_match"], abs=5e-5)
        assert values["Macro ROC-AUC (tuned thresholds)"] == pytest.approx(tuned["macro_roc_auc"], abs=5e-5)
    # Body: every label with its threshold, the limits, and the exact training command.
    for label, threshold in zip(LABELS, THRESHOLDS):
        assert f"| {label} | {threshold:.3f} |" in body
    assert "mlb-train --train data/goemotions/train.tsv -o run" in body
    assert "emoji=words" in body and "English only" in body and "Domain" in body
    assert "## Intended use" in body


def test_card_without_metrics_has_no_model_index(tmp_path):
    out = tmp_path / "run"
    make_training_output(out)
    (out / "metrics.json").unlink()
    meta, body = split_card(Path(write_model_card(str(out))).read_text(encoding="utf-8"))
    assert "model-index" not in meta
    assert "| joy | 0.400 |" in body


@pytest.mark.parametrize("value", [
    {"a": "x: y # not a comment", "b": ["it's", "line\nbreak", 'quote "q"', "sep\u2028x\x85"], "c": 1.5, "d": None, "e": True},
    {"nested": [{"k": [1, 2], "m": {"n": "ü😂"}}, {"empty": [], "also": {}}]},
])
def test_yaml_emitter_round_trips(value):
    assert yaml.safe_load(to_yaml(value)) == value


def test_card_needs_mlb_json(tmp_path):
    from mlbert.batch.errors import ModelFileError

    with pytest.raises(ModelFileError, match="no mlb.json"):
        write_model_card(str(tmp_path))
