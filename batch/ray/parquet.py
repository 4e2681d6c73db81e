"""Parquet inputs of the Ray engine: the actors read their own rows, the driver only plans.

Why not through the driver: a Parquet file says in its footer how many rows each row group
holds, so the driver can cut the file into the local engine's chunks (fixed row counts from
the first row) without reading a single value, and send each actor only "rows a..b of this
file". The actor reads the row groups that hold them (only the text and id columns), makes
the same ``Row`` records ``parquet.ParquetTable`` makes and splits them with the same
``job.split_chunk``, so ids, error records and probabilities are the local engine's,
byte for byte. Ray Data's ``read_parquet`` is not used: its blocks do not fall on the chunk
boundaries, and the chunking decides the probabilities of an int8 model (dynamic
quantization scales each batch).

Every read goes through ``parquet.open_parquet_file``, the local reader's own: a URL
(``s3://``, ``gs://``, ...) is opened through fsspec, so each actor reads its row groups
from the store itself, with the credentials of its own environment.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, List, Sequence, Tuple

import numpy as np

from mlbert.errors import InputError, MlbError, first_line
from mlbert.io.parquet import open_parquet_file
from mlbert.batch.job import split_chunk
from mlbert.io.records import ROW_ID
from mlbert.io.readers import Row

# Row groups an actor keeps after reading them: a chunk may span two groups, and the next
# chunk the actor gets often starts in the second.
_CACHED_GROUPS = 2
_cache: "OrderedDict[Tuple[str, int, Tuple[str, ...]], Any]" = OrderedDict()


def open_parquet(path: str) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` for ``path`` (a URL's handle stays open with it), or a one-line error."""
    return open_parquet_file(path)[0]


def can_open_parquet(path: str) -> bool:
    """Whether this machine can open ``path`` as Parquet (asked of every actor before they read it)."""
    try:
        open_parquet(path)
    except MlbError:
        return False
    return True


def parquet_rows(path: str) -> int:
    """Rows in the file, from its footer."""
    return int(open_parquet(path).metadata.num_rows)


@dataclass(frozen=True)
class ParquetSlice:
    """Rows ``start``..``stop`` (0-based, stop excluded) of a Parquet file, scored by an actor."""

    path: str
    start: int
    stop: int
    group_starts: Tuple[int, ...]  # first row of each row group, and the file's row count last
    text_column: str
    id_columns: Tuple[str, ...]

    @property
    def columns(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys([self.text_column, *(c for c in self.id_columns if c != ROW_ID)]))

    def rows(self) -> List[Row]:
        """The slice's rows, numbered from 1 at the file's first row, as ``ParquetTable`` numbers them."""
        rows: List[Row] = []
        first = bisect.bisect_right(self.group_starts, self.start) - 1
        parquet_file = None
        for group in range(first, len(self.group_starts) - 1):
            begin, end = self.group_starts[group], self.group_starts[group + 1]
            if begin >= self.stop:
                break
            low, high = max(self.start, begin), min(self.stop, end)
            if high <= low:  # an empty row group
                continue
            key = (self.path, group, self.columns)
            table = _cache.get(key)
            if table is None:
                parquet_file = parquet_file or open_parquet(self.path)
                try:
                    table = parquet_file.read_row_group(group, columns=list(self.columns))
                except Exception as exc:
                    raise InputError(f"cannot read row group {group} ({first_line(exc)})", self.path) from None
                _cache[key] = table
                while len(_cache) > _CACHED_GROUPS:
                    _cache.popitem(last=False)
            for offset, values in enumerate(table.slice(low - begin, high - low).to_pylist()):
                rows.append(Row(low + offset + 1, values))
        return rows

    def score(self, classifier: Any) -> Tuple[List[int], List[Sequence[Any]], List[Any], np.ndarray]:
        """(row numbers, ids, per-row errors, probabilities of the rows with text): ``split_chunk`` + model."""
        numbers, ids, row_errors, texts = split_chunk(self.rows(), self.text_column, list(self.id_columns))
        probabilities = classifier.predict_proba(texts, chunk_size=None)
        return numbers, ids, row_errors, np.ascontiguousarray(probabilities, dtype=np.float32)


def parquet_slices(path: str, first_row: int, chunk_size: int, text_column: str,
                   id_columns: Sequence[str]) -> Iterator[ParquetSlice]:
    """The local engine's chunks of ``path`` from row ``first_row`` (0-based), as slices."""
    metadata = open_parquet(path).metadata
    starts = [0]
    for group in range(metadata.num_row_groups):
        starts.append(starts[-1] + metadata.row_group(group).num_rows)
    total = starts[-1]
    for start in range(first_row, total, chunk_size):
        yield ParquetSlice(path, start, min(start + chunk_size, total), tuple(starts), text_column, tuple(id_columns))
