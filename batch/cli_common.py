"""What every mlb command does the same way at the CLI boundary.

Library code raises ``batch.errors.MlbError`` with a one-line message; here it becomes
``Error: ...`` on stderr and the error's exit code, never a traceback (cron mails stay
readable). ``MLB_RAISE_ERRORS=1`` re-raises for debugging. Only click and the stdlib, so
the runtime stays lean.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional

import click

from .errors import MlbError

CONTEXT_SETTINGS: Dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def raise_errors() -> bool:
    """True when ``MLB_RAISE_ERRORS`` asks for tracebacks instead of one-line errors."""
    return os.environ.get("MLB_RAISE_ERRORS", "").strip().lower() not in ("", "0", "false", "no")


def split_names(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[List[str]]:
    """Click callback for ``--labels a,b,c``."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give comma-separated label column names")
    return names


def run_command(
    command: click.Command,
    args: Optional[List[str]],
    prog_name: str,
    interrupted: str = "Interrupted.",
    obj: Optional[Dict[str, Any]] = None,
) -> None:
    """Run a click command as a console script: user errors become one line and an exit code."""
    try:
        argv = list(sys.argv[1:] if args is None else args)
        context_obj = dict(obj or {}, argv=argv)
        command.main(args=argv, prog_name=prog_name, standalone_mode=False, obj=context_obj)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except MlbError as exc:
        if raise_errors():
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(interrupted, err=True)
        sys.exit(130)
    except Exception as exc:  # the catch-all: one line, with the way to see more
        if raise_errors():
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(f"Error: {type(exc).__name__}: {first} (set MLB_RAISE_ERRORS=1 for the traceback)", err=True)
        sys.exit(1)
