"""Parquet input: row group by row group, the same ``Row`` records as the text readers.

Why a reader of its own: a Parquet file is columnar and compressed by itself, so it is
read one row group at a time (memory bounded by the largest row group, not the file) and
its rows become the same ``Row(number, values)`` records ``readers.Table`` yields, so
column detection, chunking, ids and error records work exactly as for CSV or JSON lines.
pyarrow is optional (``pip install 'mlbert[parquet]'``; the training extra has it): the
lean runtime installs without it and a Parquet input then gets a one-line error.
"""

from __future__ import annotations

import os
from itertools import chain
from typing import Any, Iterator, List, Optional

from .errors import InputError, UsageError, first_line
from .formats import FileFormat
from .readers import Row

INSTALL_HINT = "pip install 'mlbert[parquet]'"


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"reading Parquet needs pyarrow: {INSTALL_HINT}") from None
    return pq


class ParquetTable:
    """An open Parquet file with ``readers.Table``'s interface; ``header`` is ignored (Parquet names its columns)."""

    def __init__(self, path: str, file_format: FileFormat, header: Optional[bool] = None):
        self.path = path
        self.format = file_format
        self.has_header = True
        if path == "-":
            raise UsageError("Parquet cannot be read from stdin (it is read by row group); give the file")
        if file_format.gzip:
            raise InputError("gzip-compressed Parquet is not supported (Parquet compresses itself)", path)
        pq = _pyarrow_parquet()
        try:
            self._file = pq.ParquetFile(path)
        except FileNotFoundError:
            raise InputError("no such file", path) from None
        except IsADirectoryError:
            raise InputError("is a directory, not a file", path) from None
        except Exception as exc:  # pyarrow raises several types for damaged or foreign files
            raise InputError(f"cannot read Parquet ({first_line(exc)})", path) from None
        self.columns: List[str] = list(self._file.schema_arrow.names)
        self.size: Optional[int] = os.path.getsize(path)
        self._metadata = self._file.metadata
        self._groups_read = 0
        self._bytes_read = 0
        self._sampled: List[Row] = []
        self._iterator: Optional[Iterator[Row]] = None

    @property
    def bytes_read(self) -> int:
        """Compressed bytes of the row groups read so far (for the progress line)."""
        return self._bytes_read

    def _make_rows(self) -> Iterator[Row]:
        number = 0
        for index in range(self._metadata.num_row_groups):
            try:
                group = self._file.read_row_group(index)
            except Exception as exc:
                raise InputError(f"cannot read row group {index} ({first_line(exc)})", self.path) from None
            meta = self._metadata.row_group(index)
            self._bytes_read += sum(meta.column(i).total_compressed_size for i in range(meta.num_columns))
            for values in group.to_pylist():
                number += 1
                yield Row(number, values)

    def sample(self, count: int = 64) -> List[Row]:
        """The first ``count`` rows, kept so that ``rows()`` still yields them first."""
        if self._iterator is None:
            self._iterator = self._make_rows()
        while len(self._sampled) < count:
            row = next(self._iterator, None)
            if row is None:
                break
            self._sampled.append(row)
        return list(self._sampled[:count])

    def rows(self) -> Iterator[Row]:
        if self._iterator is None:
            self._iterator = self._make_rows()
        sampled, self._sampled = self._sampled, []
        return chain(sampled, self._iterator)

    def close(self) -> None:
        closer = getattr(self._file, "close", None)
        if closer is not None:
            closer()

    def __enter__(self) -> "ParquetTable":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
