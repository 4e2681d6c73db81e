"""Parquet input: row group by row group, the same ``Row`` records as the text readers.

Why a reader of its own: a Parquet file is columnar and compressed by itself, so it is
read one row group at a time (memory bounded by the largest row group, not the file) and
its rows become the same ``Row(number, values)`` records ``readers.Table`` yields, so
column detection, chunking, ids and error records work exactly as for CSV or JSON lines.
pyarrow is optional (``pip install 'mlbert[parquet]'``; the training extra has it): the
lean runtime installs without it and a Parquet input then gets a one-line error.

Bad bytes: Parquet strings are meant to be UTF-8 but writers do not all check. A row group
whose strings pyarrow cannot decode is not refused: it is converted value by value and an
undecodable value stays ``bytes`` (``group_rows``), so one bad value costs one row (an
error record if it is the text), never the file. Binary columns are decoded the same way.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

from mlbert.errors import InputError, MlbError, UsageError, first_line
from mlbert.io.formats import FileFormat
from mlbert.io.readers import Row, RowSource
from mlbert.io.storage import failure_reason, is_url, open_input

INSTALL_HINT = "pip install 'mlbert[parquet]'"


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"reading Parquet needs pyarrow: {INSTALL_HINT}") from None
    return pq


def open_parquet_file(path: str) -> Tuple[Any, Any]:
    """(``pyarrow.parquet.ParquetFile``, the handle to close or None) for a path or URL.

    The one place a Parquet input is opened, by the local reader and by the Ray actors that read
    their own rows: a local file is opened by pyarrow itself (native reads), a URL through
    ``storage`` (fsspec, with the credentials of the environment it runs in). Errors are one line
    naming the file.
    """
    pq = _pyarrow_parquet()
    handle: Any = None
    source: Any = path
    if is_url(path):
        handle, _ = open_input(path)
        source = handle
    try:
        return pq.ParquetFile(source), handle
    except FileNotFoundError:
        error: MlbError = InputError("no such file", path)
    except IsADirectoryError:
        error = InputError("is a directory, not a file", path)
    except MlbError as exc:
        error = exc
    except OSError as exc:
        error = InputError(f"cannot read Parquet ({failure_reason(exc, path)})", path)
    except Exception as exc:  # pyarrow raises several types for damaged or foreign files
        error = InputError(f"cannot read Parquet ({first_line(exc)})", path)
    if handle is not None:
        handle.close()
    raise error


class ParquetTable(RowSource):
    """An open Parquet file with ``readers.Table``'s interface; ``header`` is ignored (Parquet names its columns),
    and so is ``encoding`` (Parquet's strings are UTF-8 by the format)."""

    def __init__(self, path: str, file_format: FileFormat, header: Optional[bool] = None,
                 encoding: Optional[str] = None):
        self.path = path
        self.format = file_format
        self.has_header = True
        if path == "-":
            raise UsageError("Parquet cannot be read from stdin (it is read by row group); give the file")
        if file_format.gzip:
            raise InputError("gzip-compressed Parquet is not supported (Parquet compresses itself)", path)
        self._file, self._handle = open_parquet_file(path)
        schema = self._file.schema_arrow
        self.columns: List[str] = list(schema.names)
        self.column_types: Optional[Dict[str, Any]] = {f.name: f.type for f in schema}
        self._metadata = self._file.metadata
        self.size: Optional[int] = self._metadata.serialized_size + sum(
            self._group_bytes(i) for i in range(self._metadata.num_row_groups))
        self._read_columns: Optional[List[str]] = None
        self._groups_read = 0
        self._bytes_read = 0

    @property
    def bytes_read(self) -> int:
        """Compressed bytes of the row groups read so far (for the progress line)."""
        return self._bytes_read

    def _group_bytes(self, index: int) -> int:
        meta = self._metadata.row_group(index)
        return sum(meta.column(i).total_compressed_size for i in range(meta.num_columns))

    def use_columns(self, names: List[str]) -> None:
        """Read only these columns from the next row group on (a data-lake file may have hundreds)."""
        wanted = [n for n in names if n in self.columns]
        self._read_columns = wanted or None

    def _make_rows(self) -> Iterator[Row]:
        number = 0
        for index in range(self._metadata.num_row_groups):
            try:
                group = self._file.read_row_group(index, columns=self._read_columns)
            except Exception as exc:
                raise InputError(f"cannot read row group {index} ({first_line(exc)})", self.path) from None
            self._bytes_read += self._group_bytes(index)
            for values in group_rows(group):
                number += 1
                yield Row(number, values)

    def close(self) -> None:
        closer = getattr(self._file, "close", None)
        if closer is not None:
            closer()
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def group_rows(group: Any) -> Iterator[Dict[str, Any]]:
    """Each row of a row group as a dict; bytes that are UTF-8 become text, others stay bytes.

    The fast path converts the whole group at once; only a group with a string value that
    is not UTF-8 (or a binary column) is converted value by value, and an undecodable value
    stays ``bytes``: the pipeline makes an error record of it if it is the text, and the
    writers show it with U+FFFD if it is an id. One bad value costs one row, never the file.
    """
    import pyarrow as pa

    textual = [f for f in group.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if not textual:
        try:
            rows = group.to_pylist()
        except (UnicodeDecodeError, pa.ArrowInvalid):
            rows = None  # a string that is not UTF-8: value by value below
        if rows is not None:
            yield from rows
            return
    columns = []
    for field, column in zip(group.schema, group.columns):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = column.cast(pa.large_binary())
        columns.append(column.to_pylist())
    names = group.schema.names
    for cells in zip(*columns):
        yield {name: _text_if_utf8(cell) for name, cell in zip(names, cells)}


def _text_if_utf8(cell: Any) -> Any:
    if isinstance(cell, bytes):
        try:
            return cell.decode("utf-8")
        except UnicodeDecodeError:
            return cell
    return cell
