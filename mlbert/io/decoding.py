"""Bytes -> text lines in the input's encoding (``--encoding``), each with where its first bad byte was.

Why line by line: a byte that does not decode must cost its own row and nothing more, so
the readers need to know which line held it. For UTF-8 and every other encoding in which
the line end, the separators and the quote are the ASCII bytes (Latin-1, cp1252,
Shift_JIS, GB18030, EUC, ...: ``ascii_compatible``), the input is split on the byte
``\\n`` and each line is decoded on its own; a line that does not decode is kept, with
the offset of its first bad byte, and becomes an error record. UTF-16 and UTF-32 cannot be
split on bytes, so they are decoded as a stream; a bad byte in them refuses the file (one
line naming the line it follows), since no line boundary after it can be trusted.
"""

from __future__ import annotations

import codecs
import io
import itertools
from typing import BinaryIO, Iterator, Optional, Tuple

from mlbert.errors import InputError, UsageError

UTF8 = "utf-8"
UTF8_BOM = b"\xef\xbb\xbf"
# What ASCII-compatible means here: these characters are these bytes, both ways.
_ASCII_PROBE = "\n\r\t ,;\"'{}[]:abcXYZ0123456789"

# (text of the line with its line end, offset of its first undecodable byte or None)
Line = Tuple[str, Optional[int]]


def normalise_encoding(name: Optional[str]) -> str:
    """The codec's canonical name (``latin1`` -> ``iso8859-1``); an unknown name is a usage error."""
    if not name:
        return UTF8
    try:
        canonical = codecs.lookup(name.strip()).name
    except LookupError:
        raise UsageError(f"--encoding {name!r}: unknown encoding (for example utf-8, latin-1, cp1252, "
                         "utf-16, shift_jis)") from None
    if not getattr(codecs.lookup(canonical), "_is_text_encoding", True):  # base64, rot13, ...
        raise UsageError(f"--encoding {name!r} is not a text encoding")
    return "utf-8" if canonical == "utf-8-sig" else canonical  # the UTF-8 BOM is always taken off


def ascii_compatible(encoding: str) -> bool:
    """Whether lines can be split on the byte ``\\n`` and decoded one by one."""
    try:
        return _ASCII_PROBE.encode(encoding) == _ASCII_PROBE.encode("ascii") and \
            _ASCII_PROBE.encode("ascii").decode(encoding) == _ASCII_PROBE
    except (UnicodeError, LookupError):
        return False


def display_name(encoding: str) -> str:
    """How messages name an encoding: ``UTF-8`` (as before), else the codec's name."""
    return "UTF-8" if encoding == UTF8 else encoding


def decoded_lines(stream: BinaryIO, encoding: str, path: str) -> Iterator[Line]:
    """Every line of ``stream`` decoded, with its line end, and the offset of its first bad byte (None if clean)."""
    if ascii_compatible(encoding):
        return _split_then_decode(stream, encoding)
    return _decode_then_split(stream, encoding, path)


def _split_then_decode(stream: BinaryIO, encoding: str) -> Iterator[Line]:
    lines = iter(stream)
    first = next(lines, None)
    if first is None:
        return
    if encoding == UTF8 and first.startswith(UTF8_BOM):
        first = first[len(UTF8_BOM):]
    for raw in itertools.chain((first,), lines):
        try:
            yield raw.decode(encoding), None
        except UnicodeDecodeError as exc:
            yield raw.decode(encoding, errors="replace"), exc.start


def _decode_then_split(stream: BinaryIO, encoding: str, path: str) -> Iterator[Line]:
    """UTF-16/32: decoded as a stream (the codec takes its byte-order mark off), split on ``\\n``."""
    text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")  # type: ignore[arg-type]
    number = 0
    while True:
        try:
            line = text.readline()
        except UnicodeDecodeError as exc:
            raise InputError(f"is not valid {encoding} after line {number} ({exc.reason}); no row after it can be "
                             "trusted, so the file is refused", path) from None
        if not line:
            return
        number += 1
        if number == 1 and line.startswith("\ufeff"):
            line = line[1:]
        yield line, None
