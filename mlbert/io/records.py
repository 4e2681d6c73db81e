"""What one output record looks like: JSON lines, CSV and TSV records from scored chunks.

The formatters turn a ``ChunkResult`` (a chunk's rows in input order: ids, errors,
probabilities) into the text of its records; ``formats.make_formatter`` picks the formatter
an output format registers (Parquet's, with the same interface, is ``parquet_output.ParquetRecords``).
Where the records go (partial file, checkpoints, publication) is ``writers``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Optional, Sequence

import numpy as np

from mlbert.decisions import labels_and_scores, threshold_vector
from mlbert.errors import UsageError
from mlbert.io.formats import normalise_format_name

SCORE_DECIMALS = 4
LABEL_SEPARATOR = ";"
# The id of a row when the file has no id column: its 1-based data row number.
ROW_ID = "row"
# Cells a spreadsheet would run as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(cell: str) -> str:
    """Prefix a quote to a cell that a spreadsheet would evaluate (=, +, -, @, tab, CR)."""
    if cell and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def json_default(value: Any) -> Any:
    """JSON for what a Parquet id can hold besides JSON's types: bytes, dates, decimals."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, ensure_ascii=False, default=json_default)


@dataclass(frozen=True)
class OutputColumns:
    """The columns of tabular records (CSV, TSV, Parquet) besides the ids and ``labels``/``error``."""

    score_columns: List[str]
    row_column: bool


def output_columns(id_names: Sequence[str], label_names: Sequence[str]) -> OutputColumns:
    """Score column names (``score_NAME`` when a label collides with an id or a fixed column), and
    whether a ``row`` column is added (not when ``row`` already is an id)."""
    reserved = set(id_names) | {"labels", "error", "row"}
    return OutputColumns([n if n not in reserved else f"score_{n}" for n in label_names], "row" not in id_names)


@dataclass
class ChunkResult:
    """One chunk of rows in input order, ready to be written.

    ``ids[i]`` holds row i's pass-through id values (in ``id_names`` order), ``errors[i]``
    its error or None, and ``probabilities`` one row per row *without* an error, in order.
    """

    row_numbers: List[int]
    ids: List[Sequence[Any]]
    errors: List[Optional[str]]
    probabilities: np.ndarray


class ChunkFormatter:
    """What every record format is given: ids, labels, thresholds, whether to show scores, top-k."""

    def __init__(self, id_names: Sequence[str], label_names: Sequence[str], thresholds: np.ndarray,
                 scores: bool = True, top_k: Optional[int] = None):
        if top_k is not None and top_k < 1:
            raise UsageError(f"--top-k must be at least 1, not {top_k}")
        self.id_names = list(id_names)
        self.label_names = list(label_names)
        self.thresholds = threshold_vector(thresholds, len(self.label_names))
        self.scores = scores
        self.top_k = top_k
        self.columns = output_columns(self.id_names, self.label_names)

    @classmethod
    def from_options(cls, fmt: str, id_names: Sequence[str], label_names: Sequence[str], thresholds: np.ndarray, *,
                     scores: bool = True, top_k: Optional[int] = None,
                     id_types: Optional[Dict[str, Any]] = None) -> "ChunkFormatter":
        """The formatter for output format ``fmt`` (``formats.make_formatter`` calls this)."""
        raise NotImplementedError


class RecordFormatter(ChunkFormatter):
    """Turns chunk results into the bytes of JSONL / CSV / TSV records."""

    def __init__(
        self,
        fmt: str,
        id_names: Sequence[str],
        label_names: Sequence[str],
        thresholds: np.ndarray,
        scores: bool = True,
        top_k: Optional[int] = None,
        decimals: int = SCORE_DECIMALS,
    ):
        self.fmt = normalise_format_name(fmt, writable=True)
        super().__init__(id_names, label_names, thresholds, scores=scores, top_k=top_k)
        self.decimals = decimals
        self.score_columns = self.columns.score_columns
        self.row_column = ["row"] if self.columns.row_column else []

    @classmethod
    def from_options(cls, fmt: str, id_names: Sequence[str], label_names: Sequence[str], thresholds: np.ndarray, *,
                     scores: bool = True, top_k: Optional[int] = None,
                     id_types: Optional[Dict[str, Any]] = None) -> "RecordFormatter":
        """Text records keep every id as text, so ``id_types`` is not needed."""
        return cls(fmt, id_names, label_names, thresholds, scores=scores, top_k=top_k)

    # ---- CSV / TSV -----------------------------------------------------------------

    def _csv_writer(self, buffer: IO[str]):
        return csv.writer(buffer, delimiter="," if self.fmt == "csv" else "\t", lineterminator="\n")

    def header(self) -> str:
        """Text written once at the top of the file (the CSV header line; empty for JSONL)."""
        if self.fmt == "jsonl":
            return ""
        columns = self.id_names + self.row_column + ["labels"]
        if self.scores:
            columns += self.score_columns
        columns.append("error")
        buffer = io.StringIO()
        self._csv_writer(buffer).writerow([escape_formula(c) for c in columns])
        return buffer.getvalue()

    # ---- both -------------------------------------------------------------------------
    def format_chunk(self, result: ChunkResult) -> str:
        labels, scores = labels_and_scores(result.probabilities, self.label_names, self.thresholds,
                                           top_k=self.top_k, scores=self.scores, decimals=self.decimals)
        if self.fmt == "jsonl":
            return self._jsonl(result, labels, scores)
        return self._csv(result, labels, scores)

    def _jsonl(self, result: ChunkResult, labels, scores) -> str:
        lines = []
        dumps = json.dumps
        k = 0
        for number, ids, error in zip(result.row_numbers, result.ids, result.errors):
            record: Dict[str, Any] = dict(zip(self.id_names, ids))
            if error is not None:
                record["row"] = number
                record["error"] = error
            else:
                record["labels"] = labels[k]
                if self.scores:
                    record["scores"] = scores[k]
                k += 1
            lines.append(dumps(record, ensure_ascii=False, separators=(",", ":"), default=json_default))
        lines.append("")
        return "\n".join(lines)

    def _csv(self, result: ChunkResult, labels, scores) -> str:
        buffer = io.StringIO()
        writer = self._csv_writer(buffer)
        blank_scores = [""] * len(self.label_names) if self.scores else []
        k = 0
        for number, ids, error in zip(result.row_numbers, result.ids, result.errors):
            cells = [escape_formula(_cell(v)) for v in ids]
            if self.row_column:
                cells.append(str(number))
            if error is not None:
                cells.append("")
                cells.extend(blank_scores)
                cells.append(escape_formula(error))
            else:
                cells.append(escape_formula(LABEL_SEPARATOR.join(labels[k])))
                if self.scores:
                    shown = scores[k]
                    cells.extend(repr(shown[name]) if name in shown else "" for name in self.label_names)
                cells.append("")
                k += 1
            writer.writerow(cells)
        return buffer.getvalue()
