"""The README's Python API examples run as written (with the golden model as model.onnx)."""

import re
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks():
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _run(code, golden_model, tmp_path, monkeypatch, names=None):
    shutil.copy(golden_model, tmp_path / "model.onnx")
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return runpy.run_path(str(tmp_path / "example.py"), init_globals=names)


def test_readme_python_example_runs(golden_model, tmp_path, monkeypatch, capsys):
    names = _run(_blocks()[0], golden_model, tmp_path, monkeypatch)
    labels = names["clf"].label_names
    assert len(names["records"]) == 2 and set(names["records"][0]) == {"labels", "scores"}
    assert names["probabilities"].shape == (2, len(labels))
    assert len(names["top"]["labels"]) <= 2 and set(names["top"]["scores"]) <= set(labels)
    assert [[d["label"] for d in row] for row in names["like_hf"]] == \
        [[labels[j] for j in np.argsort(-p, kind="stable")] for p in names["probabilities"]]
    assert names["checked"][1] == {"error": "empty text"} and set(names["checked"][0]) == {"labels", "scores"}
    out = capsys.readouterr().out
    assert "CPUExecutionProvider" in out and "1 empty text" in out


def test_readme_pandas_example_runs(golden_model, tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    first = _run(_blocks()[0], golden_model, tmp_path, monkeypatch)
    names = _run(_blocks()[1], golden_model, tmp_path, monkeypatch, {"clf": first["clf"]})
    scores, reviews = names["scores"], names["reviews"]
    assert list(scores.index) == ["a", "b"] and list(scores.columns) == first["clf"].label_names
    np.testing.assert_array_equal(scores.to_numpy(), first["probabilities"])  # the same two texts
    assert list(reviews["labels"]) == [r["labels"] for r in first["records"]]
