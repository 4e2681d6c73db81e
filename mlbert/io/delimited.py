"""CSV/TSV records that keep "rows in == rows out" when a quote is broken, and the header rule.

Why not ``csv.reader`` alone: a text that starts with ``"`` and never closes it (a tweet
quoting someone) makes csv's lenient mode read every following line into that one field,
so a 2,000-row file came out as 3 records, with no error. The rules here, in order:

* csv's dialect (a quote opens a quoted field only at the start of a field; inside it ``""``
  is a quote; the field ends at a quote followed by the separator or the line end) read
  strictly, one record at a time, remembering the physical lines it spans;
* a record on one line whose quote closes and is followed by more text (``"hi" there``)
  is read leniently, as csv always did (``hi there``): it cannot swallow other rows;
* a quoted field that is still open at the end of the file, that is closed badly on a
  later line, or that spans more than ``MAX_QUOTED_LINES`` lines or ``MAX_QUOTED_CHARS``
  characters is a **broken quote**: the record's first line becomes an error record that
  names it, and reading starts again on the next line, so the rows after it come out as
  usual. The lines are kept only while a record is open, so memory stays bounded.

The header rule (``is_header``): ``--header``/``--no-header`` decide when given. Otherwise
a file of one column has a header only when its first line is a column name mlb knows
(``columns.known_column_name``: ``text``, ``comment``, ``id``, ...), so a headerless list of
texts loses none of them; a file of several columns has one when the first row's cells look
like names (short, distinct, not numbers, at most 3 words each).
"""

from __future__ import annotations

import csv
import sys
from collections import deque
from typing import Deque, Iterator, List, NamedTuple, Optional, Tuple

from mlbert.io.columns import known_column_name
from mlbert.io.decoding import Line

# A quoted field spanning more lines or characters than this is a quote that never closed:
# no real text cell (a comment, a review, a thread) comes near it.
MAX_QUOTED_LINES = 1000
MAX_QUOTED_CHARS = 1 << 20

# csv's default 128 KiB field limit would turn one long tweet thread into an error.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class Record(NamedTuple):
    """One record: its first physical line, its cells (None when broken), its error, its first bad byte."""

    line: int
    cells: Optional[List[str]]
    error: Optional[str] = None
    bad_byte: Optional[int] = None


# A physical line as fed to csv: (number, text, offset of its first undecodable byte or None).
_Fed = Tuple[int, str, Optional[int]]


class _Runaway(Exception):
    """Raised through csv's reader when the open record has grown past the limits."""


class _LineFeed:
    """csv's input: physical lines, first any pushed back; remembers those of the record being read.

    It runs once per line, so it is kept lean: tuples, and the first bad byte noted as lines come.
    """

    __slots__ = ("_lines", "_pushed", "_count", "record", "_chars", "bad_byte", "exhausted")

    def __init__(self, lines: Iterator[Line]):
        self._lines = lines
        self._pushed: Deque[_Fed] = deque()
        self._count = 0
        self.record: List[_Fed] = []
        self._chars = 0
        self.bad_byte: Optional[int] = None
        self.exhausted = False

    def __iter__(self) -> "_LineFeed":
        return self

    def take(self) -> Optional[_Fed]:
        """The next line (None at the end), not remembered: the fast path for lines without quotes."""
        if self._pushed:
            return self._pushed.popleft()
        try:
            text, bad = next(self._lines)
        except StopIteration:
            return None
        self._count += 1
        if "\x00" in text:  # Python 3.10's csv refuses NUL; it is never text (the pipeline drops it too)
            text = text.replace("\x00", "")
        return self._count, text, bad

    def __next__(self) -> str:
        fed = self.take()
        if fed is None:
            self.exhausted = True
            raise StopIteration
        record = self.record
        record.append(fed)
        if fed[2] is not None and self.bad_byte is None:
            self.bad_byte = fed[2]
        if len(record) > 1:
            self._chars += len(fed[1])
            if len(record) > MAX_QUOTED_LINES or self._chars + len(record[0][1]) > MAX_QUOTED_CHARS:
                raise _Runaway()
        return fed[1]

    def start_record(self) -> None:
        self.record = []
        self._chars = 0
        self.bad_byte = None
        self.exhausted = False

    def push_back(self, lines: List[_Fed]) -> None:
        """Read these lines again, before any new one."""
        self._pushed.extendleft(reversed(lines))


class DelimitedRecords:
    """The records of a CSV (``delimiter=","``) or TSV text, broken quotes recovered (module docstring)."""

    def __init__(self, lines: Iterator[Line], delimiter: str):
        self.delimiter = delimiter
        self.name = "CSV" if delimiter == "," else "TSV"
        self._feed = _LineFeed(lines)
        self._reader = csv.reader(self._feed, delimiter=delimiter, strict=True)

    def __iter__(self) -> "DelimitedRecords":
        return self

    def __next__(self) -> Record:
        """The next record. A line without a quote or a stray CR is split on the separator directly (what
        csv would give, at a fraction of the cost); any other line starts a record csv reads."""
        feed = self._feed
        while True:
            fed = feed.take()
            if fed is None:
                raise StopIteration
            body = fed[1].rstrip("\r\n")
            if '"' not in body and "\r" not in body:
                if body:  # a blank line is no record
                    return Record(fed[0], body.split(self.delimiter), None, fed[2])
                continue
            feed.push_back([fed])
            record = self._csv_record()
            if record is not None:
                return record

    def _csv_record(self) -> Optional[Record]:
        """One record through csv (strict), broken quotes recovered; None for a blank one."""
        feed = self._feed
        feed.start_record()
        try:
            cells = next(self._reader)
        except _Runaway:
            too_long = f"{MAX_QUOTED_LINES:,} lines" if len(feed.record) > MAX_QUOTED_LINES else \
                f"{MAX_QUOTED_CHARS:,} characters"
            return self._broken(f"is still open after {too_long}")
        except csv.Error as exc:
            lines = feed.record
            if feed.exhausted:
                return self._broken("never closes")
            if len(lines) == 1:
                return self._lenient(lines[0], exc)
            return self._broken(f"is closed badly on line {lines[-1][0]} ({exc})")
        except StopIteration:
            return None
        return Record(feed.record[0][0], cells, None, feed.bad_byte) if cells else None

    def _broken(self, how: str) -> Record:
        first, rest = self._feed.record[0], self._feed.record[1:]
        self._feed.push_back(rest)
        return Record(first[0], None, f"broken quote: the quoted field opened on line {first[0]} {how}")

    def _lenient(self, fed: _Fed, error: csv.Error) -> Record:
        """One line whose closing quote is followed by more text: read as csv's lenient mode always read it."""
        try:
            cells = next(csv.reader([fed[1].rstrip("\r\n")], delimiter=self.delimiter), [])
        except csv.Error:  # a CR inside an unquoted field, say: not even lenient csv reads it
            return Record(fed[0], None, f"malformed {self.name} row ({error})")
        return Record(fed[0], cells, None, fed[2])


def _looks_like_names(cells: List[str]) -> bool:
    """A header row of several columns is short, distinct, non-numeric names; a data row usually is not."""
    if any(not c.strip() for c in cells) or len(set(cells)) != len(cells):
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


def is_header(first: Record, forced: Optional[bool], other_delimiter: str) -> bool:
    """Whether the first record is the header row (the rule in the module docstring).

    A one-column first line that splits on ``other_delimiter`` into parts one of which is a
    known name (``id<TAB>text``: a TSV read as CSV) counts as a header too, so that the
    column rule can say which ``--format`` to pass.
    """
    if forced is not None:
        return forced
    if first.cells is None or first.bad_byte is not None or not first.cells:
        return False
    if len(first.cells) == 1:
        parts = first.cells[0].split(other_delimiter)
        return known_column_name(first.cells[0]) or (len(parts) > 1 and any(known_column_name(p) for p in parts))
    return _looks_like_names(first.cells)
