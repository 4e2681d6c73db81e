"""Which column of a table holds the text, the ids and the labels: one rule for every command.

``mlb-train``, ``mlb-eval``, ``mlb-export --validate-on`` and ``mlb-batch`` read the same
kinds of files, so a file must mean the same thing to all of them: a ``review`` column is
the text for ``mlb-batch`` exactly when it is for ``mlb-train``. Every decision here takes
the column names and some rows (plain dicts) and nothing else, so the streaming reader of
``mlb-batch`` (a sample of the first rows) and the in-memory tables of the trainer (all rows)
ask the same questions.

The rules, in order:

* an explicit column (``--text-column``, ``--id-column``, ``--label-column``, ``--labels``)
  is taken by exact name, then case-insensitively, then as a 1-based position
  (``--text-column 2`` for a file without a header);
* the text is the column named by the first of ``TEXT_COLUMN_NAMES`` present, compared
  case-insensitively (the list's order is the rank: ``text`` beats ``comment``); two columns
  with the same name in different case (``text`` and ``Text``) have the same rank, so the
  run asks for ``--text-column``; else the only column; else the column whose values look
  most like prose (letters and spaces), if it clearly beats every other column; else an
  error that lists the columns. ``choose_text_column`` also says which rule chose it, for
  the summary line and the run report;
* an id is a column named like an id (``ID_COLUMN_NAMES``, or ending in ``_id``/`` id``);
  when every row is known and exactly one column is left besides the text and the labels,
  that column is the id if its values are unique (GoEmotions' third column);
* labels are a list column (``LABEL_COLUMN_NAMES``, or values such as ``0,17`` or a JSON
  list) or "wide" 0/1 columns, one per label.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from mlbert.errors import ExitCode, InputError

# Column names that hold the text, in order of preference (compared case-insensitively).
TEXT_COLUMN_NAMES = (
    "text", "tweet", "sentence", "comment", "comment_text", "content", "body", "message",
    "review", "document", "utterance", "post", "title", "input", "content_text",
)
# Column names that hold row ids (besides names ending in "_id" or " id").
ID_COLUMN_NAMES = ("id", "idx", "index", "guid", "uid")
# Column names that hold a list of labels (list layout).
LABEL_COLUMN_NAMES = ("labels", "label", "emotions", "emotion", "tags", "categories", "classes", "label_ids")
LAYOUTS = ("auto", "wide", "list")
# Rows looked at to decide which column holds the text: the first rows of a file mlb-batch
# streams (they are still processed in order), the first rows of a DataFrame the Python API gets.
SAMPLE_ROWS = 64

# Text detection from the data: a value's prose score is its letters plus 5 per space
# (sentences have spaces, ids and label lists do not). The best column must score at
# least this on average and at least ``PROSE_MARGIN`` times the runner-up, so two
# columns that both hold prose make the user choose instead of a guess.
MIN_PROSE_SCORE = 3.0
PROSE_MARGIN = 2.0

_TRUE = {"1", "true", "t", "yes", "y", "1.0"}
_FALSE = {"0", "false", "f", "no", "n", "0.0"}
_INT_LIST_RE = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")


class ColumnNotFound(InputError):
    """An option names a column the file does not have (exit 2: the option does not fit the file)."""

    exit_code = ExitCode.USAGE


def find_column(columns: Sequence[str], wanted: str, *, what: str, source: str) -> str:
    """``wanted`` as a column of ``columns``: exact name, case-insensitive name, or 1-based position."""
    if wanted in columns:
        return wanted
    lowered = {c.lower(): c for c in columns}
    if wanted.lower() in lowered:
        return lowered[wanted.lower()]
    if wanted.isdigit() and 1 <= int(wanted) <= len(columns):
        return columns[int(wanted) - 1]
    shown = ", ".join(columns) if columns else "(none)"
    raise ColumnNotFound(f"no {what} column {wanted!r}; the columns are: {shown}", source)


def _prose_score(values: Iterable[Any]) -> float:
    values = list(values)
    if not values:
        return 0.0
    total = 0.0
    for value in values:
        if isinstance(value, str):
            total += sum(ch.isalpha() for ch in value) + 5 * value.count(" ")
    return total / len(values)


@dataclass(frozen=True)
class ColumnChoice:
    """The text column and the rule that chose it, in words (``chosen_by``)."""

    name: str
    chosen_by: str


def known_column_name(name: str) -> bool:
    """A name mlb reads as a column's name (text, id or labels): what makes a one-column file's first line a header."""
    low = name.strip().lower()
    return low in TEXT_COLUMN_NAMES or low in ID_COLUMN_NAMES or low in LABEL_COLUMN_NAMES


def _named_text_column(columns: Sequence[str], source: str) -> Optional[ColumnChoice]:
    """The column with the best-ranked text name, or None; two columns of that rank ask for --text-column."""
    present = [name for name in TEXT_COLUMN_NAMES if any(c.lower() == name for c in columns)]
    if not present:
        return None
    same_rank = [c for c in columns if c.lower() == present[0]]
    if len(same_rank) > 1:
        raise ColumnNotFound(f"{' and '.join(map(repr, same_rank))} could both be the text column (the same name); "
                             "pass --text-column NAME", source)
    others = [c for c in columns if c.lower() in present[1:]]
    also = f"; also present: {', '.join(others)}" if others else ""
    return ColumnChoice(same_rank[0], f"the first known text column name present{also}")


def choose_text_column(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    explicit: Optional[str] = None,
    source: str,
    delimiter_hint: Optional[str] = None,
) -> ColumnChoice:
    """The column holding the text and how it was chosen (rules in the module docstring).

    ``rows`` are the first rows of the file (or all of them); ``delimiter_hint`` is the
    other delimiter for CSV/TSV ("\\t" for a CSV), used to say so when a whole header is
    one column because the file was read with the wrong delimiter.
    """
    if explicit:
        return ColumnChoice(find_column(columns, explicit, what="text", source=source), "given with --text-column")
    named = _named_text_column(columns, source)
    if named is not None:
        return named
    if len(columns) == 1:
        if delimiter_hint and delimiter_hint in columns[0]:
            other = "tsv" if delimiter_hint == "\t" else "csv"
            raise ColumnNotFound(
                f"the header {columns[0]!r} looks like {other.upper()}; pass --format {other}", source
            )
        return ColumnChoice(columns[0], "the only column")
    scores = sorted(((_prose_score(r.get(c) for r in rows), c) for c in columns), reverse=True)
    if scores and scores[0][0] >= MIN_PROSE_SCORE and (len(scores) == 1 or scores[0][0] >= PROSE_MARGIN * scores[1][0]):
        return ColumnChoice(scores[0][1], f"no known text column name; it holds by far the most prose in the first "
                                          f"{len(rows)} rows")
    shown = ", ".join(columns) if columns else "(none)"
    raise ColumnNotFound(
        f"cannot tell which column holds the text; the columns are: {shown}. "
        "Pass --text-column NAME (or its 1-based position in a file without a header)",
        source,
    )


def text_column(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, explicit: Optional[str] = None,
                source: str, delimiter_hint: Optional[str] = None) -> str:
    """The name ``choose_text_column`` chooses (for callers that do not announce the rule)."""
    return choose_text_column(columns, rows, explicit=explicit, source=source, delimiter_hint=delimiter_hint).name


def looks_like_id(name: str) -> bool:
    """A column name that says "id" (``id``, ``ID``, ``tweet_id``, ``Comment ID``...), not a label list."""
    low = name.lower()
    if low in LABEL_COLUMN_NAMES or low == "label_id":
        return False
    return low in ID_COLUMN_NAMES or low.endswith("_id") or low.endswith(" id")


def id_column(columns: Sequence[str], *, explicit: Optional[str] = None, exclude: Iterable[str] = (),
              source: str) -> Optional[str]:
    """The id column: ``explicit`` if given, else the first column named like an id, else None."""
    if explicit:
        return find_column(columns, explicit, what="id", source=source)
    taken = set(exclude)
    return next((c for c in columns if c not in taken and looks_like_id(c)), None)


def unique_leftover_column(columns: Sequence[str], taken: Iterable[str], all_rows: Sequence[Mapping[str, Any]]) -> Optional[str]:
    """The one column not in ``taken`` when its values are distinct strings or integers, else None.

    This is how a headerless file's id column is found (GoEmotions: text, labels, comment
    id). It needs EVERY row: values that are unique in a sample prove nothing, so
    ``mlb-batch``, which streams, does not use it.
    """
    others = [c for c in columns if c not in set(taken)]
    if len(others) != 1 or not all_rows:
        return None
    values = [row.get(others[0]) for row in all_rows]
    if all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values) and len(set(values)) == len(values):
        return others[0]
    return None


# --------------------------------------------------------------------------- labels


def bool_value(value: Any) -> Optional[float]:
    """1.0 / 0.0 for a wide-layout cell (0/1, true/false, yes/no), None for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float, np.integer, np.floating)):
        if value == 1:
            return 1.0
        if value == 0:
            return 0.0
        return None
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _TRUE:
            return 1.0
        if key in _FALSE:
            return 0.0
    return None


def looks_like_label_list(value: Any) -> bool:
    """A list-layout cell: a list, an integer id, ``0,17,22`` or a JSON list."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return True
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True
    if isinstance(value, str):
        s = value.strip()
        if _INT_LIST_RE.match(s):
            return True
        if s.startswith("[") and s.endswith("]"):
            try:
                return isinstance(json.loads(s), list)
            except ValueError:
                return False
    return False


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def column_is_boolean(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    return bool(rows) and all(bool_value(row.get(column)) is not None for row in rows)


def column_is_label_list(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    filled = [row.get(column) for row in rows if not _is_blank(row.get(column))]
    return bool(filled) and all(looks_like_label_list(v) for v in filled)


@dataclass
class LabelColumns:
    """Where the labels are: ``wide`` 0/1 columns (one per label), or one ``list_column``."""

    wide: Optional[List[str]] = None
    list_column: Optional[str] = None


def _looks_wide(rows: Sequence[Mapping[str, Any]], rest: List[str], list_hinted: bool) -> bool:
    """Wide when every leftover column is 0/1, or (several columns, no list hint) most of them are.

    The second case sends a wide file with one bad value to the wide reader, whose error
    names the bad cell, instead of misreading a 0/1 column as a list of ids.
    """
    boolean = sum(column_is_boolean(rows, c) for c in rest)
    if len(rest) == 1:
        return boolean == 1 and not list_hinted
    if boolean == len(rest):
        return True
    return not list_hinted and boolean * 2 >= len(rest)


def label_columns(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    taken: Sequence[Optional[str]],
    layout: str = "auto",
    wide: Optional[Sequence[str]] = None,
    list_column: Optional[str] = None,
    names_known: bool = False,
    source: str,
) -> LabelColumns:
    """Which columns hold the labels. ``taken`` are the text and id columns; ``names_known`` says
    label names were given (a names file), which hints at a list of ids."""
    from mlbert.errors import UsageError

    if layout not in LAYOUTS:
        raise UsageError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if wide:
        if layout == "list":
            raise UsageError("--labels lists wide-layout label columns; it cannot be used with --layout list")
        return LabelColumns(wide=[find_column(columns, c, what="label", source=source) for c in wide])
    if list_column:
        if layout == "wide":
            raise UsageError("--label-column names a list-layout column; it cannot be used with --layout wide")
        return LabelColumns(list_column=find_column(columns, list_column, what="label", source=source))
    rest = [c for c in columns if c not in taken]
    if not rest:
        raise InputError(f"no label columns besides the text column {taken[0]!r}", source)
    named_list = [c for c in rest if c.lower() in LABEL_COLUMN_NAMES]
    if layout == "wide" or (layout == "auto" and _looks_wide(rows, rest, names_known or bool(named_list))):
        return LabelColumns(wide=rest)
    if named_list:
        return LabelColumns(list_column=named_list[0])
    candidates = [c for c in rest if column_is_label_list(rows, c)]
    if len(candidates) == 1:
        return LabelColumns(list_column=candidates[0])
    if len(rest) == 1:
        return LabelColumns(list_column=rest[0])
    raise InputError(
        "cannot tell which column holds the labels; pass --label-column (list layout) or "
        f"--labels (wide layout) (columns: {', '.join(columns)})",
        source,
    )
