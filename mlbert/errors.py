"""Errors a user can cause and fix, the exit codes they map to, and how one is shown.

CLIs print an ``MlbError`` as one ``Error: ...`` line, never a traceback, and exit with
its ``exit_code``. The codes are cron's contract (docs/BATCH.md), so they are defined
here once and every command and library module takes them from here.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, Iterator, Optional, Type


class ExitCode(IntEnum):
    """Process exit codes of every mlb command."""

    OK = 0
    FAILURE = 1  # the run failed; the previous output is untouched
    USAGE = 2  # options that cannot work (click's own code for usage errors)
    ROW_ERRORS = 3  # mlb-batch finished, but some rows became error records
    LOCKED = 4  # another mlb-batch run holds the output's lock
    SIGINT = 130  # stopped by Ctrl-C
    SIGTERM = 143  # stopped by SIGTERM


# Longest message taken from a foreign exception: enough for a path and a reason, short
# enough to stay one readable line in a cron mail.
MESSAGE_LIMIT = 300


def first_line(exc: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """The first line of ``exc``'s message (its type name if it has none), at most ``limit`` characters.

    Libraries underneath (onnxruntime, optimum, pyarrow, Ray) raise multi-line messages
    with tracebacks of their own; the user needs the line that says what went wrong.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[-limit:]


def raise_errors() -> bool:
    """True when ``MLB_RAISE_ERRORS`` asks for tracebacks instead of one-line errors (debugging)."""
    return os.environ.get("MLB_RAISE_ERRORS", "").strip().lower() not in ("", "0", "false", "no")


class MlbError(Exception):
    """A problem with the user's input, options or files, worth one clear line."""

    exit_code: int = ExitCode.FAILURE


class UsageError(MlbError, ValueError):
    """Options that cannot work together, or a value out of range (exit code 2, like click).

    Also a ``ValueError``: to the Python API these are bad argument values (``thresholds=1.5``,
    ``errors="ignore"``), which Python code catches as such.
    """

    exit_code = ExitCode.USAGE


class InputError(MlbError):
    """Bad data in an input file. Names the file and, where known, the row."""

    def __init__(self, reason: str, path: Optional[str] = None, row: Optional[int] = None):
        self.reason = reason
        self.path = path
        self.row = row
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(f"{where}{reason}")


class ItemError(InputError, ValueError):
    """An item given to the Python API that cannot be classified, named by its position.

    ``mlb-batch`` would write the same ``reason`` as the row's error record (the rule is
    ``mlbert.texts.text_or_reason``); ``Classifier.predict(..., errors="record")`` returns it as
    the item's entry instead of raising. ``position`` is 0-based; ``index`` is the pandas index
    label when a Series or DataFrame was given, else None; ``others`` counts the further bad
    items (only the first is raised, before anything is scored).
    """

    def __init__(self, reason: str, where: str, position: int, index: Any = None, others: int = 0):
        more = (f" (and {others} more item{'s' if others != 1 else ''} that cannot be classified; "
                'errors="record" gives each an error entry)') if others else ""
        super().__init__(reason + more, where)
        self.reason = reason
        self.where = where
        self.position = position
        self.index = index
        self.others = others

    def __reduce__(self):  # a Spark or Ray worker sends it back pickled: keep every field
        return type(self), (self.reason, self.where, self.position, self.index, self.others)


class ModelFileError(MlbError):
    """A model file that is missing, damaged, or not an mlb model."""


class OutputLocked(MlbError):
    """Another mlb-batch run holds the lock on this output."""

    exit_code = ExitCode.LOCKED


@contextmanager
def library_step(what: str, error: Type[MlbError] = MlbError) -> Iterator[None]:
    """Run a call into a library (optimum, onnxruntime, its tools) as one named step.

    Those libraries raise whatever their backends raise, with multi-line messages and
    tracebacks; the user gets ``error("<what> failed (<first line>)")`` instead. mlb's own
    errors pass through unchanged, so a step may raise a more precise one itself.
    """
    try:
        yield
    except MlbError:
        raise
    except Exception as exc:
        raise error(f"{what} failed ({first_line(exc)})") from None

