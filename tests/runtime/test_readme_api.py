"""The README's Python API example runs as written (with the golden model as model.onnx)."""

import re
import runpy
import shutil
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs(golden_model, tmp_path, monkeypatch, capsys):
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copy(golden_model, tmp_path / "model.onnx")
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    names = runpy.run_path(str(tmp_path / "example.py"))
    assert len(names["records"]) == 2 and set(names["records"][0]) == {"labels", "scores"}
    assert names["probabilities"].shape == (2, len(names["clf"].label_names))
    assert len(names["top"]["labels"]) <= 2 and set(names["top"]["scores"]) <= set(names["clf"].label_names)
    assert "CPUExecutionProvider" in capsys.readouterr().out
