"""Errors a user can cause and fix. CLIs print them as one line, no traceback."""

from __future__ import annotations

from typing import Optional


class MlbError(Exception):
    """A problem with the user's input, options or files, worth one clear line."""

    exit_code = 1


class UsageError(MlbError):
    """Options that cannot work together, or a value out of range (exit code 2, like click)."""

    exit_code = 2


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


class ModelFileError(MlbError):
    """A model file that is missing, damaged, or not an mlb model."""
