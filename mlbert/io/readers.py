"""Streaming table readers: files -> ``Row`` records, one per data row, never dropping one.

A reader does not tokenize or classify; it only turns bytes into rows. A row that cannot be
read (a ragged CSV row, a malformed JSON line, bytes that are not UTF-8) is still yielded,
with ``error`` set and ``values`` None, so every later stage can keep "rows in == rows out".
Only problems that make the whole file unreadable raise ``InputError``. CSV/TSV records,
broken quotes and the header rule are ``delimited``'s; encodings (``--encoding``) are ``decoding``'s.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, Iterator, List, Optional

from mlbert.errors import InputError
from mlbert.io.decoding import UTF8, ascii_compatible, decoded_lines, display_name, normalise_encoding
from mlbert.io.delimited import DelimitedRecords, Record, is_header
from mlbert.io.formats import FileFormat, detect_format, reader_class
from mlbert.io.storage import open_input

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
_SNIFF_BYTES = 8192
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Bytes that never occur in text: NUL and the C0 controls other than tab, LF, VT, FF, CR and ESC.
BINARY_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
# A file is refused as binary only when this share of its first 8 KiB is such bytes or
# bytes that are not UTF-8: a few bad bytes make error records (or are cleaned), not a lost file.
BINARY_SHARE = 0.3


@dataclass
class Row:
    number: int
    values: Optional[Dict[str, Any]]
    error: Optional[str] = None


class _CountingReader(io.RawIOBase):
    """Counts raw bytes consumed so progress bars need no second pass over the file."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


def binary_share(sample: bytes, encoding: str = UTF8) -> float:
    """The share of ``sample`` that is NUL/control bytes or bytes that do not decode in ``encoding``."""
    if not sample:
        return 0.0
    controls = len(sample) - len(sample.translate(None, BINARY_BYTES))
    undecodable = len(sample) - len(sample.decode(encoding, errors="ignore").encode(encoding))
    return (controls + undecodable) / len(sample)


class RowSource:
    """What every reader (``formats.Format.reader``) offers; a reader only makes rows (``_make_rows``).

    Interface: ``path``, ``format``, ``columns``, ``column_types`` (Arrow types where the file
    declares them, else None), ``has_header``, ``bytes_read``, ``size``, ``sample(n)``,
    ``use_columns(names)``, ``rows()``, ``close()``; a context manager. ``sample`` reads ahead
    without losing rows, so columns can be detected from data even on stdin.
    """

    column_types: Optional[Dict[str, Any]] = None
    _lookahead: Optional[List[Row]] = None
    _source: Optional[Iterator[Row]] = None

    def _make_rows(self) -> Iterator[Row]:
        raise NotImplementedError

    def sample(self, count: int = 64) -> List[Row]:
        """The first ``count`` rows, kept so that ``rows()`` still yields them first."""
        if self._lookahead is None:
            self._source = self._make_rows()
            self._lookahead = []
        assert self._source is not None
        while len(self._lookahead) < count:
            row = next(self._source, None)
            if row is None:
                break
            self._lookahead.append(row)
        return list(self._lookahead[:count])

    def use_columns(self, names: List[str]) -> None:
        """Only these columns are needed from here on (a reader may skip the others)."""

    def rows(self) -> Iterator[Row]:
        """Every row, once: the sampled ones first."""
        if self._lookahead is None:
            return self._make_rows()
        ahead, self._lookahead = self._lookahead, []
        return itertools.chain(ahead, self._source if self._source is not None else ())

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> "RowSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Table(RowSource):
    """An open CSV, TSV, JSON lines or plain text input (the ``RowSource`` interface); ``rows()`` streams once."""

    def __init__(self, path: str, file_format: FileFormat, header: Optional[bool] = None,
                 encoding: Optional[str] = None):
        self.path = path
        self.format = file_format
        self.encoding = normalise_encoding(encoding)
        self._encoding_given = encoding is not None
        self.size: Optional[int] = None
        self._own_raw = None
        if path == "-":
            raw: BinaryIO = _stdin()
        else:
            raw, self.size = open_input(path)
            self._own_raw = raw
        self._counter = _CountingReader(raw)
        buffered = io.BufferedReader(self._counter, buffer_size=1 << 16)
        head = buffered.peek(4)[:4]
        if head[:2] == GZIP_MAGIC:
            stream: BinaryIO = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
            stream = io.BufferedReader(stream, buffer_size=1 << 16)  # type: ignore[arg-type]
        else:
            if self.format.gzip:
                raise InputError("named .gz but is not gzip-compressed", path)
            stream = buffered
        self._stream = stream
        try:
            sample = stream.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read ({exc})", path) from None
        self._check_content(sample)
        self.columns: List[str] = []
        self.has_header = False
        self._first: Optional[Record] = None
        self._header_hint = header
        self._lines = decoded_lines(self._stream, self.encoding, path)
        if self.format.format in ("csv", "tsv"):
            self._prepare_delimited()
        elif self.format.format == "text":
            self.columns = ["text"]
        elif self.format.format == "jsonl":
            self._prepare_jsonl(sample)

    # -- detection -------------------------------------------------------------------------

    def _check_content(self, sample: bytes) -> None:
        fmt = self.format.format
        if sample.startswith(PARQUET_MAGIC):
            raise InputError(f"is a Parquet file, not {fmt}; name it .parquet or pass --format parquet", self.path)
        if sample.startswith(ZIP_MAGIC):
            raise InputError(f"is a zip archive, not {fmt}; unzip it first", self.path)
        if sample.startswith(UTF16_BOMS) and not self._encoding_given:
            raise InputError("is UTF-16 text; convert it to UTF-8 (iconv -f UTF-16 -t UTF-8) or pass --encoding utf-16",
                             self.path)
        if not ascii_compatible(self.encoding):
            return  # UTF-16/32: NUL bytes are half the text; a byte that does not decode refuses the file
        share = binary_share(sample, self.encoding)
        if share > BINARY_SHARE:
            raise InputError(
                f"looks binary ({share:.0%} of its first {len(sample)} bytes are NUL, control or non-"
                f"{display_name(self.encoding)} bytes), not {fmt} text", self.path)

    @property
    def bytes_read(self) -> int:
        return self._counter.count

    def _bad_bytes(self, offset: int) -> str:
        return f"bytes that are not {display_name(self.encoding)} (at byte {offset} of the line)"

    def _prepare_delimited(self) -> None:
        """Columns from the first record: the header's names, or ``column_1``, ``column_2``, ... (``delimited``)."""
        delimiter, other = (",", "\t") if self.format.format == "csv" else ("\t", ",")
        self._records = DelimitedRecords(self._lines, delimiter)
        first = next(self._records, None)
        if first is None:
            return
        if first.cells is None:  # the first record decides the columns; a broken one cannot
            raise InputError(f"line {first.line}: {first.error}; the first row decides the columns, so the file "
                             "is refused", self.path)
        if is_header(first, self._header_hint, other):
            self.has_header = True
            self.columns = [c.strip() for c in first.cells]
            if len(set(self.columns)) != len(self.columns):
                raise InputError(f"the header has duplicate column names: {', '.join(self.columns)}", self.path)
        else:
            self.columns = [f"column_{i + 1}" for i in range(len(first.cells))]
            self._first = first

    def _prepare_jsonl(self, sample: bytes) -> None:
        text = sample.decode(self.encoding, errors="replace").lstrip("\ufeff").lstrip()
        if text and text[:1] not in ("{", '"'):
            preview = text.split("\n", 1)[0][:40]
            raise InputError(
                f"does not look like JSON lines (first line starts {preview!r}); pass --format csv/tsv/text if it is one",
                self.path,
            )
        self.columns = []
        for line in text.split("\n")[:1]:
            try:
                obj = json.loads(line)
                if isinstance(obj, dict):
                    self.columns = [str(k) for k in obj]
            except ValueError:
                pass

    # -- rows ---------------------------------------------------------------------------------

    def _make_rows(self) -> Iterator[Row]:
        fmt = self.format.format
        if fmt in ("csv", "tsv"):
            return self._delimited_rows()
        if fmt == "jsonl":
            return self._jsonl_rows()
        return self._text_rows()

    def _delimited_rows(self) -> Iterator[Row]:
        if not self.columns:
            return
        width = len(self.columns)
        records: Iterator[Record] = self._records
        if self._first is not None:
            records = itertools.chain([self._first], records)
            self._first = None
        for number, record in enumerate(records, 1):
            yield self._delimited_row(number, record, width)

    def _delimited_row(self, number: int, record: Record, width: int) -> Row:
        if record.cells is None:
            return Row(number, None, record.error)
        if record.bad_byte is not None:
            return Row(number, None, self._bad_bytes(record.bad_byte))
        if len(record.cells) != width:
            return Row(number, None, f"expected {width} fields, found {len(record.cells)}")
        return Row(number, dict(zip(self.columns, record.cells)))

    def _jsonl_rows(self) -> Iterator[Row]:
        number = 0
        for line, bad in self._lines:
            if not line.strip():
                continue
            number += 1
            if bad is not None:
                yield Row(number, None, self._bad_bytes(bad))
                continue
            try:
                # strict=False: a raw control character inside a string (an exporter that did not
                # escape it) is kept, and cleaned with the text, instead of losing the row.
                obj = json.loads(line, strict=False)
            except ValueError as exc:
                yield Row(number, None, f"malformed JSON ({exc.msg} at column {exc.colno})")
                continue
            if isinstance(obj, str):
                obj = {"text": obj}
            if not isinstance(obj, dict):
                yield Row(number, None, f"a JSON line must be an object, not {type(obj).__name__}")
                continue
            yield Row(number, obj)

    def _text_rows(self) -> Iterator[Row]:
        for number, (line, bad) in enumerate(self._lines, 1):
            if bad is not None:
                yield Row(number, None, self._bad_bytes(bad))
            else:
                yield Row(number, {"text": line.rstrip("\r\n")})

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._own_raw is not None:
            self._own_raw.close()
            self._own_raw = None


def _stdin() -> BinaryIO:
    """Standard input's bytes; a closed one is a clear error, not an AttributeError."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise InputError("stdin is closed (the command was started with <&- or without one); pipe the texts in or "
                         "give a file", "-")
    return stream


def open_table(
    path: str,
    format: Optional[str] = None,
    header: Optional[bool] = None,
    default_format: Optional[str] = None,
    encoding: Optional[str] = None,
) -> Table:
    """Open ``path`` (``-`` for stdin) for streaming with the reader its format registers.

    The format comes from ``format`` (``--format``) or the name (``formats.detect_format``);
    ``encoding`` (``--encoding``) is the text's, UTF-8 when None.
    """
    file_format = detect_format(path, explicit=format, default=default_format)
    return reader_class(file_format)(str(path), file_format, header=header, encoding=encoding)
