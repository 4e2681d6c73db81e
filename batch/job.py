"""What both engines of mlb-batch share: the job's options and summary, and how a chunk of rows becomes texts.

The local engine (``pipeline``) and the Ray engine (``ray.engine``) import these from here, so
both read the same options, pick the same columns, give every row the same id and the same
error record, and parse ``--threshold`` the same way; neither engine imports the other's helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from mlbert.batch.run_report import Tally
from mlbert.decisions import check_threshold, label_position, resolve_thresholds
from mlbert.errors import UsageError
from mlbert.io import columns
from mlbert.io.columns import SAMPLE_ROWS
from mlbert.io.readers import Row, Table
from mlbert.io.records import ROW_ID
from mlbert.runtime.classifier import DEFAULT_CHUNK_SIZE
from mlbert.texts import text_or_reason


@dataclass
class BatchOptions:
    """Everything ``mlb-batch`` takes; the CLI only fills this in."""

    input: str
    output: str = "-"
    model: Optional[str] = None
    format: Optional[str] = None
    header: Optional[bool] = None
    text_column: Optional[str] = None
    id_columns: Sequence[str] = ()
    output_format: Optional[str] = None
    thresholds: Sequence[str] = ()
    top_k: Optional[int] = None
    scores: bool = True
    device: str = "auto"
    threads: Optional[int] = None
    streams: Optional[int] = None
    token_budget: Optional[int] = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    resume: bool = False
    staging_dir: Optional[str] = None  # where an output URL's partial, progress and lock files live


@dataclass
class Summary:
    rows: int = 0
    errors: int = 0
    seconds: float = 0.0
    provider: str = ""
    output: str = "-"
    resumed_from: int = 0
    notes: List[str] = field(default_factory=list)
    tally: Optional[Tally] = None  # positives per label and error kinds, for the run report

    @property
    def rows_per_second(self) -> float:
        done = self.rows - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        resumed = f" (resumed after row {self.resumed_from})" if self.resumed_from else ""
        where = "stdout" if self.output == "-" else self.output
        return (
            f"mlb-batch: {self.rows} rows, {self.errors} errors, {self.seconds:.2f} s, "
            f"{self.rows_per_second:.0f} rows/s, {self.provider}{resumed} -> {where}"
        )


ProgressCallback = Callable[[int, int, int, Optional[int]], None]


def parse_thresholds(values: Sequence[str], label_names: Sequence[str], defaults: Sequence[float]) -> np.ndarray:
    """``--threshold 0.4`` (every label) and/or ``--threshold joy=0.3,anger=0.6`` (named labels).

    Range and label checks, and how named labels override the rest, are ``mlbert.decisions``'
    (the Python API's ``thresholds=`` goes through the same functions).
    """
    overall: Optional[float] = None
    named: Dict[str, float] = {}
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, number = item.rpartition("=")
            try:
                parsed = float(number)
            except ValueError:
                raise UsageError(f"--threshold {item!r}: expected a number or LABEL=NUMBER") from None
            threshold = check_threshold(parsed, f"--threshold {item!r}")
            if sep:
                name = name.strip()
                label_position(name, label_names, f"--threshold {item!r}")
                named[name] = threshold
            else:
                overall = threshold
    thresholds = resolve_thresholds(overall, label_names, defaults)
    return resolve_thresholds(named, label_names, thresholds)


def _where(table: Table) -> str:
    return "stdin" if table.path == "-" else table.path


def pick_text_column(table: Table, explicit: Optional[str]) -> str:
    """The text column by the rule every command shares (``columns.text_column``), from the first rows."""
    if not table.columns:  # an empty file (or JSON lines whose first line is bad): rows decide
        return explicit or "text"
    other_delimiter = {"csv": "\t", "tsv": ","}.get(table.format.format) if table.has_header else None
    sample = [row.values for row in table.sample(SAMPLE_ROWS) if row.values is not None]
    return columns.text_column(table.columns, sample, explicit=explicit, source=_where(table),
                               delimiter_hint=other_delimiter)


def pick_id_columns(table: Table, explicit: Sequence[str], text_column: str) -> List[str]:
    """The columns copied into each record: ``--id-column``s, else an id-named column, else the row number."""
    if explicit:
        if not table.columns:
            return list(explicit)
        return [columns.find_column(table.columns, name, what="id", source=_where(table)) for name in explicit]
    found = columns.id_column(table.columns, exclude=[text_column], source=_where(table))
    return [found] if found is not None else [ROW_ID]


def chunks_of(rows: Iterator[Row], size: int) -> Iterator[List[Row]]:
    while True:
        chunk = list(islice(rows, size))
        if not chunk:
            return
        yield chunk


def _text_of(values: Dict[str, Any], column: str) -> Tuple[Optional[str], Optional[str]]:
    """(text, None) or (None, why the row has no usable text): ``mlbert.texts``' rule, which the
    Python API applies to its items too."""
    if column not in values:
        return None, f"no {column!r} field"
    return text_or_reason(values[column], repr(column))


def split_chunk(
    chunk: Sequence[Row], text_column: str, id_columns: List[str]
) -> Tuple[List[int], List[Sequence[Any]], List[Optional[str]], List[str]]:
    """(row numbers, id tuples, per-row error or None, texts of the rows without error).

    Shared by the local and the Ray engine (``batch.ray_engine``) so both give every row
    the same id and the same error record.
    """
    use_row_id = id_columns == [ROW_ID]
    numbers: List[int] = []
    ids: List[Sequence[Any]] = []
    row_errors: List[Optional[str]] = []
    texts: List[str] = []
    for row in chunk:
        numbers.append(row.number)
        values = row.values
        if use_row_id:
            ids.append((row.number,))
        elif values is None:
            ids.append(tuple(None for _ in id_columns))
        else:
            ids.append(tuple(values.get(c) for c in id_columns))
        if row.error is not None or values is None:
            row_errors.append(row.error or "unreadable row")
            continue
        text, why = _text_of(values, text_column)
        if why is not None:
            row_errors.append(why)
            continue
        row_errors.append(None)
        texts.append(text)  # type: ignore[arg-type]
    return numbers, ids, row_errors, texts
