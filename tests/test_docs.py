"""The README's promises stay true: CLI reference current, set-up commands match CI."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_in_readme_is_current():
    result = subprocess.run([sys.executable, "scripts/cli_reference.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = ".venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q"
    assert test_command in readme
    assert test_command in ci


def test_every_console_script_is_documented():
    setup = (ROOT / "setup.cfg").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in ("mlb-train", "mlb-export", "mlb-batch", "mlb-eval"):
        assert f"{name} =" in setup
        assert f"### `{name}`" in readme
