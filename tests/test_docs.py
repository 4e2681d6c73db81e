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


def test_the_first_readme_command_classifies_the_shipped_sample_with_the_builtin_model(tmp_path):
    """scripts/try_builtin.sh, the README's first command after the install, as a new user sees it."""
    import os

    readme = (ROOT / "README.md").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && scripts/try_builtin.sh" in readme
    env = dict(os.environ, MLB_BIN=str(Path(sys.executable).parent), MLB_TRY_OUT=str(tmp_path), MLB_MODEL="/nowhere")
    result = subprocess.run(["scripts/try_builtin.sh"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "30 rows read, 30 records written" in result.stderr and "model: built-in goemotions (28 labels)" in result.stderr
    assert "30 records in" in result.stdout and "Label shares" in result.stdout
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == 30
