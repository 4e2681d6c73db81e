"""What the Python API accepts as texts, read into one shape: the texts to score and a reason per bad item.

``Classifier.predict`` and ``predict_proba`` take one str, any sequence or iterable of texts (list,
tuple, 1-D numpy array, generator), a pandas Series, or a pandas DataFrame, whose text column is
chosen by the rule every command uses (``mlbert.io.columns.text_column`` on the first
``SAMPLE_ROWS`` rows, as mlb-batch does for a file) unless ``text_column=`` names it.

Every item goes through ``mlbert.texts.text_or_reason``, the rule that makes a row of a file an
error record in mlb-batch, so an item is an error here exactly when that row would be there.
Containers whose items cannot be matched to results are refused: a dict (iterating it gives
its keys), a set (no order), bytes (iterating it gives numbers).

pandas is not a dependency of the runtime: an object is a Series or DataFrame only when pandas
is already imported (``sys.modules``), so this module never imports it, and results are built
with the caller's own pandas.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterator, List, Mapping, Optional

import numpy as np

from mlbert.errors import ItemError, UsageError
from mlbert.io import columns
from mlbert.texts import text_or_reason

ERRORS = ("raise", "record")
# How an item that is not a text is named in its reason (a DataFrame names its column instead).
ITEM_FIELD = "the value"


@dataclass
class Items:
    """The items of one call: ``texts`` (one per good item, in order, cleaned) and one reason per item."""

    texts: List[str]
    reasons: List[Optional[str]]  # None: the item's text is in ``texts``
    single: bool = False  # one str was given: one result comes back
    pandas: Any = None  # the caller's pandas module, when a Series or DataFrame was given
    index: Any = None  # its index, kept on DataFrame results

    def __len__(self) -> int:
        return len(self.reasons)

    def index_label(self, position: int) -> Any:
        """The pandas index label of item ``position`` (a plain Python value), or None."""
        if self.index is None:
            return None
        return _plain(self.index[position])

    def where(self, position: int) -> str:
        """How an error names item ``position``: ``texts[3]``, or ``texts.iloc[3] (index 'b')`` for pandas."""
        if self.single:
            return "texts"
        if self.index is None:
            return f"texts[{position}]"
        return f"texts.iloc[{position}] (index {self.index_label(position)!r})"

    def check(self, errors: str) -> None:
        """With ``errors="raise"``, an ``ItemError`` for the first bad item, before anything is scored."""
        if errors not in ERRORS:
            raise UsageError(f"errors={errors!r}: use 'raise' (an ItemError naming the first bad item) or "
                             "'record' (an error entry for each bad item)")
        if errors == "record":
            return
        bad = [i for i, reason in enumerate(self.reasons) if reason is not None]
        if bad:
            first = bad[0]
            raise ItemError(self.reasons[first], self.where(first), first,  # type: ignore[arg-type]
                            self.index_label(first), others=len(bad) - 1)

    def spread(self, probabilities: np.ndarray) -> np.ndarray:
        """One row per item: the good items' probabilities, NaN for each bad one (rows in = rows out)."""
        if len(self.texts) == len(self.reasons):
            return probabilities
        full = np.full((len(self.reasons), probabilities.shape[1]), np.nan, dtype=probabilities.dtype)
        full[[reason is None for reason in self.reasons]] = probabilities
        return full

    def entries(self, results: List[Any]) -> List[Any]:
        """One entry per item: the good items' ``results`` in order, ``{"error": reason}`` for each bad one."""
        good: Iterator[Any] = iter(results)
        return [next(good) if reason is None else {"error": reason} for reason in self.reasons]

    def proba_result(self, full: np.ndarray, label_names: List[str]) -> Any:
        """``full`` as the caller gets it: a row for one str, a DataFrame for pandas, else the array."""
        if self.single:
            return full[0]
        if self.pandas is not None:
            return self.pandas.DataFrame(full, index=self.index, columns=list(label_names))
        return full


def read_items(texts: Any, text_column: Any = None) -> Items:
    """``texts`` as ``Items`` (see the module docstring for what is accepted and refused)."""
    if isinstance(texts, str):
        _no_text_column(text_column, texts)
        return _items([texts], ITEM_FIELD, single=True)
    pandas = sys.modules.get("pandas")  # never imported here: a pandas object means it already is
    if pandas is not None and isinstance(texts, pandas.DataFrame):
        position = frame_text_column(texts, text_column)
        field = repr(_plain(texts.columns[position]))
        return _items(texts.iloc[:, position].tolist(), field, pandas=pandas, index=texts.index)
    _no_text_column(text_column, texts)
    if pandas is not None and isinstance(texts, pandas.Series):
        return _items(texts.tolist(), ITEM_FIELD, pandas=pandas, index=texts.index)
    return _items(_as_list(texts), ITEM_FIELD)


def _plain(label: Any) -> Any:
    """A pandas label as a plain Python value (numpy's repr, ``np.int64(7)``, is noise in a message)."""
    if isinstance(label, tuple):  # a MultiIndex label
        return tuple(_plain(part) for part in label)
    return label.item() if isinstance(label, np.generic) else label


def _items(values: List[Any], field: str, **kwargs: Any) -> Items:
    texts: List[str] = []
    reasons: List[Optional[str]] = []
    for value in values:
        text, reason = text_or_reason(value, field, origin="Python")
        reasons.append(reason)
        if reason is None:
            texts.append(text)  # type: ignore[arg-type]
    return Items(texts, reasons, **kwargs)


def _no_text_column(text_column: Any, texts: Any) -> None:
    if text_column is not None:
        raise UsageError(f"text_column= picks a pandas DataFrame's column; texts is a {type(texts).__name__}")


def _as_list(texts: Any) -> List[Any]:
    """The items of a sequence or iterable, refusing containers whose items are not its texts in order."""
    kind = type(texts).__name__
    if isinstance(texts, Mapping):
        raise UsageError(f"texts is a {kind}, whose items are its keys: pass list(d.values()), or "
                         "pandas.Series(d) to keep the keys as the index")
    if isinstance(texts, (bytes, bytearray, memoryview)):
        raise UsageError(f"texts is {kind}: decode it to a str, or pass a list of texts")
    if isinstance(texts, (set, frozenset)):
        raise UsageError(f"texts is a {kind}, which has no order to match results to: pass a list")
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise UsageError(f"texts is a {texts.ndim}-D numpy array; give a 1-D one, one text per item")
        return texts.tolist()
    try:
        iterator = iter(texts)
    except TypeError:
        raise UsageError(f"texts must be a str, a list (or other iterable) of str, or a pandas Series or "
                         f"DataFrame, not a {kind}") from None
    return list(iterator)


def frame_text_column(frame: Any, text_column: Any = None) -> int:
    """The position of a DataFrame's text column: ``text_column`` (its label, or a case-insensitive
    name), else the rule every command uses for a file's columns (``columns.text_column``)."""
    labels = list(frame.columns)
    names = [str(label) for label in labels]
    shown = ", ".join(names) if names else "(none)"
    if text_column is not None:
        for position, label in enumerate(labels):
            if label == text_column:
                return position
        if isinstance(text_column, str):
            lowered = [n for n in names if n.lower() == text_column.lower()]
            if len(lowered) == 1:
                return names.index(lowered[0])
        raise UsageError(f"text_column={text_column!r}: the DataFrame has no such column (columns: {shown})")
    rows = [dict(zip(names, row)) for row in frame.head(columns.SAMPLE_ROWS).itertuples(index=False, name=None)]
    try:
        return names.index(columns.text_column(names, rows, source="texts"))
    except columns.ColumnNotFound:
        raise UsageError(f"cannot tell which column of the DataFrame holds the text (columns: {shown}); "
                         "pass text_column=NAME") from None
