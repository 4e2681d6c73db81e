"""The format registry: what ``tweets.csv.gz``, ``part-0.parquet`` or ``-`` means, for every command.

One table of formats decides what a file name means, which names ``--format`` and
``--output-format`` accept, which files an inbox folder picks up, and which reader opens a
file, so ``mlb-train``, ``mlb-eval`` and ``mlb-batch`` never disagree about a file. A new
format is one ``register_format`` entry here naming everything it needs: its reader class,
and for an output format its records' formatter and the finisher that turns the finished
partial file into the output (each ``"module:name"``, imported only when such a file is
opened or written, so an optional dependency such as pyarrow stays optional and no module
of ``mlbert.io`` imports another's format back).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mlbert.errors import UsageError
from mlbert.io.storage import name_part


@dataclass(frozen=True)
class Format:
    """One file format.

    ``reader``: "module:Class" of its reader (``readers.Table``'s interface). ``writable``:
    ``mlb-batch`` can write its records in it, with ``formatter`` ("module:Class", a
    ``records.ChunkFormatter`` built by ``from_options``) and, when the records need a last
    step once every row is written, ``finisher`` ("module:function(partial, target)"). ``tabular``: rows have named columns (plain
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
    formatter: str = "mlbert.io.records:RecordFormatter"
    finisher: Optional[str] = None


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
                       writable=True, compressed=True, formatter="mlbert.io.parquet_output:ParquetRecords",
                       finisher="mlbert.io.parquet_output:write_parquet"))


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
    """The records' format: ``explicit`` (``--output-format``), else the output's name (``.gz`` aside), else JSON lines."""
    if explicit:
        return normalise_format_name(explicit, writable=True)
    name = name_part(path).lower()
    fmt = _by_extension(name[:-3] if name.endswith(".gz") else name)
    return fmt.name if fmt is not None and fmt.writable else "jsonl"


def output_gzip(path: str, fmt: str) -> bool:
    """Whether the records are written gzip-compressed: the output's name ends in ``.gz`` (``labels.jsonl.gz``)."""
    if not name_part(path).lower().endswith(".gz"):
        return False
    if FORMATS[normalise_format_name(fmt, writable=True)].compressed:
        raise UsageError(f"{path}: {fmt} compresses itself; drop the .gz from the name")
    return True


def _imported(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def reader_class(file_format: FileFormat) -> Any:
    """The reader class registered for ``file_format`` (imported now)."""
    return _imported(FORMATS[file_format.format].reader)


def make_formatter(fmt: str, id_names: Sequence[str], label_names: Sequence[str], thresholds: Any,
                   scores: bool = True, top_k: Optional[int] = None,
                   id_types: Optional[Dict[str, Any]] = None) -> Any:
    """The records' formatter registered for output format ``fmt`` (text records or Parquet's bytes)."""
    name = normalise_format_name(fmt, writable=True)
    return _imported(FORMATS[name].formatter).from_options(name, id_names, label_names, thresholds, scores=scores,
                                                           top_k=top_k, id_types=id_types)


def finisher(fmt: str) -> Optional[Callable[[str, str], None]]:
    """What turns the finished partial file into the output for ``fmt`` (Parquet's conversion), or None."""
    reference = FORMATS[normalise_format_name(fmt, writable=True)].finisher
    return _imported(reference) if reference else None
