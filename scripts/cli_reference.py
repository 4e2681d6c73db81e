"""Write the README's CLI reference from the commands' own --help (run after changing options).

    .venv/bin/python scripts/cli_reference.py          # rewrite README.md between the markers
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 if README.md is out of date (tests do this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"


def commands():
    import importlib

    import click

    found = []
    for name, module_name in (
        ("mlb-train", "mlbert.trainer.cli"),
        ("mlb-export", "mlbert.exporter.cli"),
        ("mlb-batch", "mlbert.batch.cli"),
        ("mlb-eval", "mlbert.trainer.eval_cli"),
    ):
        module = importlib.import_module(module_name)
        command = getattr(module, "cli", None)
        if not isinstance(command, click.Command):
            command = module.main
        found.append((name, command))
    return found


def reference() -> str:
    parts = []
    for name, command in commands():
        result = CliRunner().invoke(command, ["--help"], prog_name=name, terminal_width=100)
        if result.exit_code != 0:
            raise SystemExit(f"{name} --help failed: {result.output}")
        parts.append(f"### `{name}`\n\n```\n{result.output.rstrip()}\n```\n")
    return "\n".join(parts)


def render(readme: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {START} ... {END} block")
    return pattern.sub(lambda _: f"{START}\n{reference()}\n{END}", readme)


def main(argv: list) -> int:
    path = ROOT / "README.md"
    current = path.read_text(encoding="utf-8")
    updated = render(current)
    if "--check" in argv:
        if updated != current:
            print("README.md CLI reference is out of date: run .venv/bin/python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
