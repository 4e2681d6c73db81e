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
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in readme.splitlines() if "-m pytest" in line and line.startswith("python3 -m venv")]
    assert len(commands) == 1, commands
    command = commands[0]
    # The suite in the development install, then the runtime alone as `pip install mlbert` gives it.
    assert ".venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q" in command
    assert command.endswith("&& scripts/test_runtime_only.sh")
    assert command in ci_lines


def test_setup_commands_need_nothing_beside_the_clone():
    """The README's commands and the quickstart use the data shipped in data/, not a sibling folder."""
    readme = (ROOT / "README.md").read_text()
    quickstart = (ROOT / "scripts" / "quickstart.sh").read_text()
    for text in (readme, quickstart, (ROOT / ".ci" / "run").read_text()):
        assert "../shared" not in text
    assert "data/goemotions" in quickstart
    for name in ("train.tsv.gz", "dev.tsv.gz", "test.tsv.gz", "emotions.txt", "README.md"):
        assert (ROOT / "data" / "goemotions" / name).is_file(), name


def test_every_console_script_is_documented():
    setup = (ROOT / "setup.cfg").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in ("mlb-train", "mlb-export", "mlb-batch", "mlb-eval"):
        assert f"{name} =" in setup
        assert f"### `{name}`" in readme
