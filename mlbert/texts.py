"""What counts as a text to classify: one rule for mlb-batch's rows and the Python API's items.

A value (a cell of an input file, an item of a list, a value of a pandas Series) becomes the text
the model reads, or the reason it cannot be one. ``mlb-batch`` writes the reason as the row's
error record; ``Classifier.predict`` raises it as ``ItemError`` naming the item's position, or
returns it as the item's error entry (``errors="record"``). Both call ``text_or_reason``, so a
value that is an error record in a file is an error in a notebook, and a text is cleaned the
same way in both before the model's own preprocessing (``mlbert.preprocess``) runs.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional, Tuple

# Control characters other than tab, LF and CR (C0, DEL, C1) are never text: a few in a row
# are dropped from its text rather than costing the row. BERT-family tokenizers drop them
# too, so for those models the scores do not change; other tokenizers would see noise.
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# pandas' missing-value markers, known by type name so that pandas is never imported here
# (the lean runtime does not depend on it).
_MISSING_TYPES = ("NAType", "NaTType")


def clean_text(text: str) -> str:
    """``text`` without control characters (other than tab, LF and CR)."""
    return _CONTROL_CHARACTERS.sub("", text) if _CONTROL_CHARACTERS.search(text) else text


def is_missing(value: Any) -> bool:
    """None, a float NaN (pandas' missing value in a text column) or pandas' ``NA``/``NaT``."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in _MISSING_TYPES


def text_or_reason(value: Any, field: str, origin: str = "JSON") -> Tuple[Optional[str], Optional[str]]:
    """(text, None), or (None, why ``value`` cannot be classified).

    ``field`` names the value in the reason (mlb-batch: the column, ``'text'``; the Python API:
    ``the value``); ``origin`` names where its type comes from (``JSON`` for a file's cell,
    ``Python`` for an API item). Numbers are classified as their text, as a CSV cell would be;
    a missing value, bytes that are not UTF-8, any other type and a text that is empty once
    control characters are dropped are not texts.
    """
    if is_missing(value):
        return None, f"{field} is null"
    if isinstance(value, bytes):  # a Parquet value that is not UTF-8 (parquet.group_rows)
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"bytes that are not UTF-8 (at byte {exc.start} of {field})"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"{field} is not text (a {origin} {type(value).__name__})"
    text = clean_text(value) if isinstance(value, str) else str(value)
    if not text.strip():
        return None, "empty text"
    return text, None
