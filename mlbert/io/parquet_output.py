"""Parquet output: the records as a Parquet file, written so that ``--resume`` still works.

The records: the id columns, ``row`` (the 1-based input row, unless it is the id),
``labels`` (list<string>, null for an error row), one float32 column per label with its
probability (unrounded; null for an error row, and with ``--top-k`` for the scores not
kept; ``--no-scores`` drops them) and ``error`` (null for a classified row). The columns
are named as in CSV output. The file's key-value metadata holds, under ``mlb``, the label
names, the thresholds used and the score columns. Ids keep their Arrow type when the input
is Parquet; ids from text formats are strings (a JSON number as its JSON text).

How it stays resumable: a Parquet file is only valid once its footer is written, and no
library reopens one to append. So while the run goes, each chunk is appended to
``OUTPUT.partial`` as one Arrow IPC record batch (a streaming format that is valid up to
any batch boundary), and the checkpoint after each chunk records the byte count exactly as
for JSON lines: ``--resume`` truncates to it and appends. When every row is done,
``write_parquet`` turns the batches into the Parquet file (row groups of whole chunks, at
least ``ROW_GROUP_ROWS`` rows each), which is then published atomically. The batches and
the conversion are deterministic, so a resumed run writes the same bytes as an
uninterrupted one. benchmarks/bench_parquet.py measures the conversion.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mlbert import __version__
from mlbert.decisions import labels_and_scores
from mlbert.errors import UsageError
from mlbert.io.parquet import INSTALL_HINT
from mlbert.io.records import ROW_ID, ChunkFormatter, ChunkResult

# Chunks are gathered into row groups of at least this many rows: readers of Parquet
# prefer row groups of many rows, and an output row is small (ids, labels, scores).
ROW_GROUP_ROWS = 65536
METADATA_KEY = b"mlb"


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UsageError(f"writing Parquet needs pyarrow: {INSTALL_HINT}") from None
    return pa


def _as_text(value: Any) -> Optional[str]:
    """An id from a text format as a string cell (JSON numbers and objects as JSON text)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, ensure_ascii=False, default=str)


class ParquetRecords(ChunkFormatter):
    """``RecordFormatter``'s interface for Parquet: ``header()`` and ``format_chunk()`` give IPC bytes."""

    fmt = "parquet"

    def __init__(self, id_names: Sequence[str], label_names: Sequence[str], thresholds: np.ndarray,
                 scores: bool = True, top_k: Optional[int] = None, id_types: Optional[Dict[str, Any]] = None):
        pa = _pyarrow()
        super().__init__(id_names, label_names, thresholds, scores=scores, top_k=top_k)
        self.pa = pa
        types = id_types or {}
        # The default id is the row number (an int); other ids keep a Parquet input's types, else text.
        self.id_types = [pa.int64()] if self.id_names == [ROW_ID] else [types.get(n, pa.string()) for n in self.id_names]
        fields = [pa.field(n, t) for n, t in zip(self.id_names, self.id_types)]
        fields += [pa.field("row", pa.int64())] if self.columns.row_column else []
        fields.append(pa.field("labels", pa.list_(pa.string())))
        if scores:
            fields += [pa.field(n, pa.float32()) for n in self.columns.score_columns]
        fields.append(pa.field("error", pa.string()))
        metadata = {"label_names": self.label_names, "thresholds": [float(t) for t in self.thresholds],
                    "score_columns": self.columns.score_columns if scores else [], "top_k": top_k,
                    "written_by": f"mlb-batch {__version__}"}
        self.schema = pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata).encode("utf-8")})


    @classmethod
    def from_options(cls, fmt: str, id_names: Sequence[str], label_names: Sequence[str], thresholds: np.ndarray, *,
                     scores: bool = True, top_k: Optional[int] = None,
                     id_types: Optional[Dict[str, Any]] = None) -> "ParquetRecords":
        return cls(id_names, label_names, thresholds, scores=scores, top_k=top_k, id_types=id_types)

    def header(self) -> bytes:
        """The stream's schema message: the first bytes of ``OUTPUT.partial``."""
        return self.schema.serialize().to_pybytes()

    def format_chunk(self, result: ChunkResult) -> bytes:
        """One record batch with a row per input row, serialized."""
        pa = self.pa
        n = len(result.row_numbers)
        ok = np.array([e is None for e in result.errors], dtype=bool)
        arrays: List[Any] = []
        for j, typ in enumerate(self.id_types):
            values = [ids[j] for ids in result.ids]
            if pa.types.is_string(typ) or pa.types.is_large_string(typ):
                values = [_as_text(v) for v in values]
            arrays.append(pa.array(values, type=typ))
        if self.columns.row_column:
            arrays.append(pa.array(result.row_numbers, type=pa.int64()))
        labels, _ = labels_and_scores(result.probabilities, self.label_names, self.thresholds,
                                      top_k=self.top_k, scores=False)
        full_labels: List[Optional[List[str]]] = [None] * n
        for i, row_labels in zip(np.flatnonzero(ok), labels):
            full_labels[i] = [str(name) for name in row_labels]
        arrays.append(pa.array(full_labels, type=pa.list_(pa.string())))
        if self.scores:
            arrays.extend(self._score_arrays(result.probabilities, ok))
        arrays.append(pa.array(result.errors, type=pa.string()))
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        return batch.serialize().to_pybytes()

    def _score_arrays(self, probabilities: np.ndarray, ok: np.ndarray) -> List[Any]:
        n, labels = len(ok), len(self.label_names)
        values = np.zeros((n, labels), dtype=np.float32)
        shown = np.zeros((n, labels), dtype=bool)
        values[ok] = probabilities
        shown[ok] = True
        if self.top_k is not None and len(probabilities):
            order = np.argsort(-probabilities, axis=1, kind="stable")[:, :self.top_k]
            kept = np.zeros_like(probabilities, dtype=bool)
            np.put_along_axis(kept, order, True, axis=1)
            shown[ok] = kept
        return [self.pa.array(values[:, j], mask=~shown[:, j]) for j in range(labels)]


def write_parquet(journal_path: str, target_path: str) -> None:
    """Turn the finished IPC journal into a Parquet file at ``target_path`` (flushed to disk).

    Memory: one row group at a time. The file is opened by Python so it gets the umask's mode.
    """
    pa = _pyarrow()
    import pyarrow.parquet as pq

    with pa.memory_map(journal_path, "r") as source, open(target_path, "wb") as sink:
        reader = pa.ipc.open_stream(source)
        with pq.ParquetWriter(sink, reader.schema) as writer:
            pending: List[Any] = []
            rows = 0
            for batch in reader:
                pending.append(batch)
                rows += batch.num_rows
                if rows >= ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(pending, schema=reader.schema), row_group_size=rows)
                    pending, rows = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending, schema=reader.schema), row_group_size=rows)
        sink.flush()
        os.fsync(sink.fileno())
