"""What every mlb command does the same way at the CLI boundary.

Library code raises ``MlbError`` with a one-line message; ``MlbCommand`` turns it into
``Error: ...`` on stderr and the error's exit code, never a traceback (cron mails stay
readable). The same happens to a file the OS refuses (``OSError``), to anything
unexpected (one line, with the way to see more), to Ctrl-C (130) and SIGTERM (143).
``MLB_RAISE_ERRORS=1`` re-raises for debugging.

Every command is an ``MlbCommand``, so a console script, ``python -m``, a direct call and
click's ``CliRunner`` in the tests all go through exactly this code. A command's callback
may return an exit code (``mlb-batch`` returns 3 when some rows became error records).
Only click and the stdlib, so the runtime stays lean.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional

import click

from mlbert.errors import ExitCode, MlbError, first_line, raise_errors

CONTEXT_SETTINGS: Dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# How a command says it was stopped: (what stopped it, the context object) -> message.
StopMessage = Callable[[str, Dict[str, Any]], str]


def split_names(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[List[str]]:
    """Click callback for ``--labels a,b,c``."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give comma-separated label column names")
    return names


class Stopped(BaseException):
    """Raised from the SIGTERM handler; a BaseException so that library code cannot swallow it."""


def _raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped()


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """While the command runs, SIGTERM raises ``Stopped`` (cron's ``timeout`` and systemd send it)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_stopped)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _default_stop_message(what: str, obj: Dict[str, Any]) -> str:
    return f"stopped by {what}"


def _exit(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(int(code))


class MlbCommand(click.Command):
    """A click command whose errors become one line and an exit code, the same way for every mlb CLI.

    ``stopped`` gives the line printed when Ctrl-C or SIGTERM ends the run (for example how
    many rows were written and that ``--resume`` continues).
    """

    def __init__(self, *args: Any, stopped: Optional[StopMessage] = None, **kwargs: Any):
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(*args, **kwargs)
        self.stopped = stopped or _default_stop_message

    def main(self, args: Optional[List[str]] = None, prog_name: Optional[str] = None, **extra: Any) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        extra.pop("standalone_mode", None)
        obj = dict(extra.pop("obj", None) or {}, argv=argv)
        try:
            with sigterm_stops():
                result = super().main(args=argv, prog_name=prog_name, standalone_mode=False, obj=obj, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort as exc:  # click turns Ctrl-C into Abort
            if isinstance(exc.__context__, KeyboardInterrupt):
                _exit(self.stopped("Ctrl-C", obj), ExitCode.SIGINT)
            _exit("aborted", ExitCode.FAILURE)
        except KeyboardInterrupt:
            _exit(self.stopped("Ctrl-C", obj), ExitCode.SIGINT)
        except Stopped:
            _exit(self.stopped("SIGTERM", obj), ExitCode.SIGTERM)
        except BrokenPipeError:
            # `mlb-batch ... | head`: the reader left; stop quietly, like other Unix tools.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(ExitCode.FAILURE)
        except MlbError as exc:
            if raise_errors():
                raise
            _exit(str(exc), exc.exit_code)
        except OSError as exc:  # a file the OS refused: name it, give the reason
            if raise_errors():
                raise
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            _exit(f"{where}{exc.strerror or first_line(exc)}", ExitCode.FAILURE)
        except Exception as exc:  # the catch-all: one line, with the way to see more
            if raise_errors():
                raise
            _exit(f"unexpected {type(exc).__name__}: {first_line(exc)} (MLB_RAISE_ERRORS=1 shows the traceback)",
                  ExitCode.FAILURE)
        sys.exit(int(result) if isinstance(result, int) else ExitCode.OK)


def command_argv() -> List[str]:
    """The arguments the running command was given (for provenance: the command that made a file)."""
    ctx = click.get_current_context(silent=True)
    obj = (ctx.obj if ctx is not None else None) or {}
    return list(obj.get("argv", sys.argv[1:]))
