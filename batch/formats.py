"""File format detection shared by every command that reads or writes tables.

One place decides what ``tweets.csv.gz`` or ``-`` means, so ``mlb-train``, ``mlb-eval``
and ``mlb-batch`` never disagree about a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .errors import UsageError

FORMATS = ("csv", "tsv", "jsonl", "text", "parquet")

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".txt": "text",
    ".text": "text",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_ALIASES = {"ndjson": "jsonl", "json": "jsonl", "txt": "text", "tab": "tsv"}


@dataclass(frozen=True)
class FileFormat:
    """What a path holds: the table format and whether it is gzip-compressed."""

    format: str
    gzip: bool = False


def normalise_format_name(name: str) -> str:
    key = name.lower().strip()
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise UsageError(f"unknown format {name!r}: use one of {', '.join(FORMATS)}")
    return key


def detect_format(path: str, explicit: Optional[str] = None, default: Optional[str] = None) -> FileFormat:
    """Format from ``explicit`` (``--format``) if given, else from the file name.

    ``default`` is used for names that say nothing (``-`` for stdin, or no extension);
    without it such a name is a usage error that says to pass ``--format``.
    """
    name = str(path)
    lowered = name.lower()
    compressed = lowered.endswith(".gz")
    if compressed:
        lowered = lowered[:-3]
    if explicit:
        return FileFormat(normalise_format_name(explicit), compressed)
    for extension, fmt in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return FileFormat(fmt, compressed)
    if default is not None:
        return FileFormat(normalise_format_name(default), compressed)
    raise UsageError(
        f"{name}: cannot tell the format from the file name; pass --format ({', '.join(FORMATS)})"
    )
