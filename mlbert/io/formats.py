"""The format registry: what ``tweets.csv.gz``, ``part-0.parquet`` or ``-`` means, for every command.

One table of formats decides what a file name means, which names ``--format`` and
``--output-format`` accept, which files an inbox folder picks up, and which reader opens a
file, so ``mlb-train``, ``mlb-eval`` and ``mlb-batch`` never disagree about a file. A new
input format is one ``register_format`` entry here naming its reader class
(``"module:Class"``, imported only when such a file is opened, so an optional dependency
such as pyarrow stays optional).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from mlbert.errors import UsageError
from mlbert.io.storage import name_part


@dataclass(frozen=True)
class Format:
    """One file format.

    ``reader``: "module:Class" of its reader (``readers.Table``'s interface). ``writable``:
    ``mlb-batch`` can write its records in it. ``tabular``: rows have named columns (plain
    text has one text per line, so it cannot hold labels). ``compressed``: compresses
    itself, so a ``.gz`` around it is refused.
    """

    name: str
    extensions: Tuple[str, ...]
    reader: str
    aliases: Tuple[str, ...] = ()
    writable: bool = False
    tabular: bool = True
    compressed: bool = False


FORMATS: Dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    taken = {name for f in FORMATS.values() for name in (f.name, *f.aliases)}
    if fmt.name in taken or set(fmt.aliases) & taken:
        raise ValueError(f"format {fmt.name!r} (or an alias of it) is already registered")
    FORMATS[fmt.name] = fmt
    return fmt


register_format(Format("csv", (".csv",), "mlbert.io.readers:Table", writable=True))
register_format(Format("tsv", (".tsv", ".tab"), "mlbert.io.readers:Table", aliases=("tab",), writable=True))
register_format(Format("jsonl", (".jsonl", ".ndjson", ".json"), "mlbert.io.readers:Table",
                       aliases=("ndjson", "json"), writable=True))
register_format(Format("text", (".txt", ".text"), "mlbert.io.readers:Table", aliases=("txt",), tabular=False))
register_format(Format("parquet", (".parquet", ".pq"), "mlbert.io.parquet:ParquetTable", aliases=("pq",),
                       writable=True, compressed=True))


@dataclass(frozen=True)
class FileFormat:
    """What a path holds: the table format and whether it is gzip-compressed."""

    format: str
    gzip: bool = False


def format_names(*, writable: bool = False, tabular: bool = False, aliases: bool = False) -> List[str]:
    """Registered names (for ``click.Choice``), optionally only writable or tabular ones, with aliases."""
    names: List[str] = []
    for fmt in FORMATS.values():
        if (writable and not fmt.writable) or (tabular and not fmt.tabular):
            continue
        names.append(fmt.name)
    if aliases:
        names += [a for fmt in FORMATS.values() if fmt.name in names for a in fmt.aliases]
    return names


def main_extensions() -> List[str]:
    """Each format's first extension (``.csv``, ``.tsv``, ...), for messages that list them."""
    return [fmt.extensions[0] for fmt in FORMATS.values()]


def normalise_format_name(name: str, *, writable: bool = False) -> str:
    """A format name or alias -> the registered name; a usage error names the choices."""
    key = name.lower().strip()
    for fmt in FORMATS.values():
        if key == fmt.name or key in fmt.aliases:
            if writable and not fmt.writable:
                break
            return fmt.name
    choices = format_names(writable=writable)
    what = "output format" if writable else "format"
    raise UsageError(f"unknown {what} {name!r}: use one of {', '.join(choices)}")


def _by_extension(lowered_name: str) -> Optional[Format]:
    for fmt in FORMATS.values():
        if lowered_name.endswith(fmt.extensions):
            return fmt
    return None


def detect_format(path: str, explicit: Optional[str] = None, default: Optional[str] = None) -> FileFormat:
    """Format from ``explicit`` (``--format``) if given, else from the file name.

    ``default`` is used for names that say nothing (``-`` for stdin, or no extension);
    without it such a name is a usage error that says to pass ``--format``.
    """
    name = str(path)
    lowered = name_part(name).lower()
    compressed = lowered.endswith(".gz")
    if compressed:
        lowered = lowered[:-3]
    if explicit:
        return FileFormat(normalise_format_name(explicit), compressed)
    fmt = _by_extension(lowered)
    if fmt is not None:
        return FileFormat(fmt.name, compressed)
    if default is not None:
        return FileFormat(normalise_format_name(default), compressed)
    raise UsageError(
        f"{name}: cannot tell the format from the file name; pass --format ({', '.join(FORMATS)})"
    )


def readable_by_name(path: str) -> bool:
    """Whether the name alone says a registered format (an inbox folder takes only such files)."""
    lowered = name_part(str(path)).lower()
    if lowered.endswith(".gz"):
        lowered = lowered[:-3]
    return _by_extension(lowered) is not None


def output_format(path: str, explicit: Optional[str] = None) -> str:
    """The records' format: ``explicit`` (``--output-format``), else the output's name, else JSON lines."""
    if explicit:
        return normalise_format_name(explicit, writable=True)
    name = name_part(path).lower()
    if name.endswith(".gz"):
        raise UsageError(f"{path}: compressed output is not supported; pipe `-o -` into gzip instead")
    fmt = _by_extension(name)
    return fmt.name if fmt is not None and fmt.writable else "jsonl"


def reader_class(file_format: FileFormat) -> Any:
    """The reader class registered for ``file_format`` (imported now)."""
    fmt = FORMATS[file_format.format]
    module_name, _, attribute = fmt.reader.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
