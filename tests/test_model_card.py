"""The model card: YAML front matter that parses and carries metrics.json's numbers; the body's facts;
the usage it shows runs as written."""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from mlbert.trainer.report.model_card import to_yaml, write_model_card

from conftest import TINY_LABELS
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
    from mlbert.errors import ModelFileError

    with pytest.raises(ModelFileError, match="no mlb.json"):
        write_model_card(str(tmp_path))


def usage_snippets(card: str):
    """The shell commands and Python code the card shows users under "How to use" and "Intended use":
    lines of ```bash blocks, inline `mlb-... ARGS` spans, and ```python blocks."""
    sections = re.split(r"^## ", card, flags=re.M)
    usage = "".join(s for s in sections if s.startswith(("How to use", "Intended use")))
    commands = [line for block in re.findall(r"```bash\n(.*?)```", usage, re.S) for line in block.splitlines() if line]
    commands += [span for span in re.findall(r"`(mlb-[a-z]+ [^`]+)`", usage)]
    python = re.findall(r"```python\n(.*?)```", usage, re.S)
    return commands, python


def test_card_usage_runs_as_written(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """Every command and snippet the card shows works in the checkpoint folder, as a user would run it."""
    from importlib.metadata import entry_points

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    commands, python = usage_snippets(Path(write_model_card(str(folder))).read_text(encoding="utf-8"))
    assert [c.split()[0] for c in commands] == ["mlb-export", "mlb-batch", "mlb-eval"]
    assert len(python) == 1
    # The user's own files the commands name.
    (folder / "texts.csv").write_text("text\nwhat a day 😂\nI am so sad\n", encoding="utf-8")
    (folder / "your_data.csv").write_text(
        "text,anger,joy,sadness,surprise\nwhat a day,0,1,0,1\nI hate it,1,0,0,0\nso sad today,0,0,1,0\n", encoding="utf-8"
    )
    monkeypatch.chdir(folder)
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name.startswith("mlb-")}
    for command in commands:
        name, *args = shlex.split(command)
        try:
            scripts[name].load()(args)
        except SystemExit as exc:  # what the console script would exit with
            if exc.code in (0, None):
                continue
            pytest.fail(f"`{command}` from the model card exited with {exc.code}: {capsys.readouterr().err}")
    assert (folder / "model.onnx").stat().st_size > 0
    records = [json.loads(line) for line in (folder / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 2 and all("labels" in r for r in records)
    assert "samples Jaccard" in capsys.readouterr().out  # mlb-eval's table
    exec(compile(python[0], "model card", "exec"), {})
    printed = ast.literal_eval(capsys.readouterr().out.strip())
    assert isinstance(printed, list) and set(printed) <= set(TINY_LABELS)
