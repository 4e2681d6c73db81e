"""Streaming table readers: files -> ``Row`` records, one per data row, never dropping one.

A reader does not tokenize or classify; it only turns bytes into rows. A row that cannot be
read (a ragged CSV row, a malformed JSON line, bytes that are not UTF-8) is still yielded,
with ``error`` set and ``values`` None, so every later stage can keep "rows in == rows out".
Only problems that make the whole file unreadable raise ``InputError``.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, Iterator, List, Optional

from mlbert.errors import InputError
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

# csv's default 128 KiB field limit would turn one long tweet thread into an error.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


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


def binary_share(sample: bytes) -> float:
    """The share of ``sample`` that is NUL/control bytes or bytes that are not UTF-8."""
    if not sample:
        return 0.0
    controls = len(sample) - len(sample.translate(None, BINARY_BYTES))
    undecodable = len(sample) - len(sample.decode("utf-8", errors="ignore").encode("utf-8"))
    return (controls + undecodable) / len(sample)


def _looks_like_header(cells: List[str]) -> bool:
    """A header row is short, distinct, non-numeric names; a data row usually is not."""
    if not cells or any(not c.strip() for c in cells):
        return False
    if len(set(cells)) != len(cells):
        return False
    for cell in cells:
        text = cell.strip()
        if len(text) > 64:
            return False
        try:
            float(text)
            return False
        except ValueError:
            pass
        if "," in text and all(part.strip().isdigit() for part in text.split(",")):
            return False
    # Data rows of text files tend to hold sentences; names rarely have more than 3 words.
    return all(len(c.split()) <= 3 for c in cells)


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

    def __init__(self, path: str, file_format: FileFormat, header: Optional[bool] = None):
        self.path = path
        self.format = file_format
        self.size: Optional[int] = None
        self._own_raw = None
        if path == "-":
            raw: BinaryIO = sys.stdin.buffer
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
        self._first_cells: Optional[List[str]] = None
        self._header_hint = header
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
        if sample.startswith(UTF16_BOMS):
            raise InputError("is UTF-16 text; convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)", self.path)
        share = binary_share(sample)
        if share > BINARY_SHARE:
            raise InputError(
                f"looks binary ({share:.0%} of its first {len(sample)} bytes are NUL, control or non-UTF-8 bytes), "
                f"not {fmt} text", self.path)

    @property
    def bytes_read(self) -> int:
        return self._counter.count

    def _text_lines(self, bad_lines: List[int]) -> Iterator[str]:
        """Decoded lines, keeping line ends for csv; undecodable lines are noted, not dropped."""
        first = True
        for raw_line in self._stream:
            if first:
                first = False
                if raw_line.startswith(b"\xef\xbb\xbf"):
                    raw_line = raw_line[3:]
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_lines.append(exc.start)
                line = raw_line.decode("utf-8", errors="replace")
            if "\x00" in line:  # Python 3.10's csv refuses NUL; it is never text (the pipeline drops it too)
                line = line.replace("\x00", "")
            yield line

    def _prepare_delimited(self) -> None:
        delimiter = "," if self.format.format == "csv" else "\t"
        self._bad_lines: List[int] = []
        self._reader = csv.reader(self._text_lines(self._bad_lines), delimiter=delimiter)
        try:
            first = next(self._reader)
        except StopIteration:
            self.columns = []
            return
        except csv.Error as exc:
            raise InputError(f"cannot parse the first row as {self.format.format.upper()} ({exc})", self.path) from None
        header = self._header_hint
        if header is None:
            header = _looks_like_header(first) and not self._bad_lines
        if header:
            self.has_header = True
            self.columns = [c.strip() for c in first]
            if len(set(self.columns)) != len(self.columns):
                raise InputError(f"the header has duplicate column names: {', '.join(self.columns)}", self.path)
            self._bad_lines.clear()
        else:
            self.columns = [f"column_{i + 1}" for i in range(len(first))]
            self._first_cells = first

    def _prepare_jsonl(self, sample: bytes) -> None:
        text = sample.lstrip(b"\xef\xbb\xbf").lstrip()
        if text and text[:1] not in (b"{", b'"'):
            preview = text.split(b"\n", 1)[0][:40].decode("utf-8", errors="replace")
            raise InputError(
                f"does not look like JSON lines (first line starts {preview!r}); pass --format csv/tsv/text if it is one",
                self.path,
            )
        self.columns = []
        for line in sample.split(b"\n")[:1]:
            try:
                obj = json.loads(line.decode("utf-8-sig"))
                if isinstance(obj, dict):
                    self.columns = [str(k) for k in obj]
            except (ValueError, UnicodeDecodeError):
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
        number = 0
        if self._first_cells is not None:
            number += 1
            cells, self._first_cells = self._first_cells, None
            yield self._delimited_row(number, cells, width)
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                self._bad_lines.clear()
                yield Row(number, None, f"malformed {self.format.format.upper()} row ({exc})")
                continue
            if not cells:  # a blank line: csv yields [], it is not a data row
                self._bad_lines.clear()
                continue
            number += 1
            yield self._delimited_row(number, cells, width)

    def _delimited_row(self, number: int, cells: List[str], width: int) -> Row:
        if self._bad_lines:
            offset = self._bad_lines[0]
            self._bad_lines.clear()
            return Row(number, None, f"bytes that are not UTF-8 (at byte {offset} of the line)")
        if len(cells) != width:
            return Row(number, None, f"expected {width} fields, found {len(cells)}")
        return Row(number, dict(zip(self.columns, cells)))

    def _raw_lines(self) -> Iterator[bytes]:
        """Raw lines, with a UTF-8 byte-order mark taken off the first."""
        first = True
        for raw_line in self._stream:
            if first:
                first = False
                raw_line = raw_line.lstrip(b"\xef\xbb\xbf")
            yield raw_line

    def _jsonl_rows(self) -> Iterator[Row]:
        number = 0
        for raw_line in self._raw_lines():
            if not raw_line.strip():
                continue
            number += 1
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Row(number, None, f"bytes that are not UTF-8 (at byte {exc.start} of the line)")
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
        number = 0
        for raw_line in self._raw_lines():
            number += 1
            line = raw_line.rstrip(b"\r\n")
            try:
                yield Row(number, {"text": line.decode("utf-8")})
            except UnicodeDecodeError as exc:
                yield Row(number, None, f"bytes that are not UTF-8 (at byte {exc.start} of the line)")

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._own_raw is not None:
            self._own_raw.close()
            self._own_raw = None


def open_table(
    path: str,
    format: Optional[str] = None,
    header: Optional[bool] = None,
    default_format: Optional[str] = None,
) -> Table:
    """Open ``path`` (``-`` for stdin) for streaming with the reader its format registers.

    The format comes from ``format`` (``--format``) or the name (``formats.detect_format``).
    """
    file_format = detect_format(path, explicit=format, default=default_format)
    return reader_class(file_format)(str(path), file_format, header=header)
