"""Labelled data for training: files or hub datasets -> texts plus a multi-hot label matrix.

Two label layouts exist in the wild and both are read here:

* **wide**: one 0/1 (or true/false) column per label, as in SemEval-2018 E-c
  (``ID``, ``Tweet``, ``anger``, ``anticipation``, ...);
* **list**: one column holding the labels of a row, as names or integer ids,
  comma-separated or as a JSON list, as in GoEmotions (``0,17,22`` with ids indexing
  ``emotions.txt``).

Files are read through ``batch.readers`` (CSV/TSV/JSONL, gzip, header detection) so that
training and inference agree on what a file means; Parquet through pyarrow; hub datasets
and ``save_to_disk`` folders through ``datasets``. Every row ends up either in the data
or in an error that names the file and row: no row is silently dropped.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mlbert.io import columns as column_rules
from mlbert.errors import InputError, UsageError

# Rows looked at to decide which columns hold the text and the labels.
DETECT_SAMPLE = 2000


@dataclass
class LabelledData:
    """One split: texts and their multi-hot labels (``labels[i, j] == 1`` when text i has label j)."""

    texts: List[str]
    labels: np.ndarray  # (n, L) float32 0/1 multi-hot
    label_names: List[str]
    ids: Optional[List[str]]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int], source: Optional[str] = None) -> "LabelledData":
        idx = list(indices)
        return LabelledData(
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            label_names=list(self.label_names),
            ids=[self.ids[i] for i in idx] if self.ids is not None else None,
            source=source or self.source,
        )


@dataclass(frozen=True)
class LabelLayout:
    """Where the text, ids and labels are (the labelled-data options; None: let ``batch.columns`` decide).

    ``label_columns``: wide layout, one 0/1 column per label. ``label_column``: list layout,
    one column of names or ids, where ids start at ``label_id_base`` (0 for GoEmotions, 1 for XED).
    """

    text_column: Optional[str] = None
    layout: str = "auto"
    label_columns: Optional[Sequence[str]] = None
    label_column: Optional[str] = None
    id_column: Optional[str] = None
    label_id_base: int = 0


@dataclass
class InMemoryTable:
    """Rows in memory with their 1-based data row numbers; internal to this module."""

    source: str
    columns: List[str]
    rows: List[Tuple[int, Dict[str, Any]]]
    has_header: bool
    # Label names known from the dataset's own schema (hub ClassLabel features).
    schema_label_names: Optional[List[str]] = None


# --------------------------------------------------------------------------- reading


def read_label_names_file(path: str) -> List[str]:
    """One label name per line (GoEmotions ``emotions.txt``); blank lines at the end are ignored."""
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except FileNotFoundError:
        raise InputError("no such file (label names)", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read label names ({exc})", path) from None
    while lines and not lines[-1]:
        lines.pop()
    for number, name in enumerate(lines, 1):
        if not name:
            raise InputError("empty label name", path, number)
    if not lines:
        raise InputError("no label names in the file", path)
    if len(set(lines)) != len(lines):
        dupes = sorted({n for n in lines if lines.count(n) > 1})
        raise InputError(f"duplicate label names: {', '.join(dupes)}", path)
    return lines


def _read_file(path: str, format: Optional[str], header: Optional[bool]) -> InMemoryTable:
    """Every row of a file through the runtime's readers (the format registry decides the reader)."""
    from mlbert.io.readers import open_table

    if path != "-" and os.path.isdir(path):
        raise InputError("is a folder, not a file (for a saved dataset use --dataset)", path)
    rows: List[Tuple[int, Dict[str, Any]]] = []
    with open_table(path, format=format, header=header) as table:
        columns = list(table.columns)
        has_header = bool(table.has_header)
        for row in table.rows():
            if row.error is not None or row.values is None:
                raise InputError(row.error or "unreadable row", path, row.number)
            rows.append((row.number, row.values))
            for key in row.values:
                if key not in columns:
                    columns.append(key)
    return InMemoryTable(path, columns, rows, has_header)


# --------------------------------------------------------------------------- label parsing


def _split_label_value(value: Any, source: str, row: int) -> List[Any]:
    """The labels of one list-layout cell, as ints (ids) or strs (names)."""
    if value is None:
        return []
    if isinstance(value, bool):
        raise InputError(f"label value {value!r} is not a label name or id", source, row)
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    elif isinstance(value, str):
        s = value.strip()
        if not s:
            return []
        if s.startswith("[") and s.endswith("]"):
            try:
                parsed = json.loads(s)
            except ValueError:
                raise InputError(f"label list {s!r} is not valid JSON", source, row) from None
            if not isinstance(parsed, list):
                raise InputError(f"label list {s!r} is not a JSON list", source, row)
            items = parsed
        else:
            items = [part.strip() for part in s.split(",")]
    else:
        raise InputError(f"label value {value!r} is not a label name, id or list", source, row)
    out: List[Any] = []
    for item in items:
        if isinstance(item, bool):
            raise InputError(f"label value {item!r} is not a label name or id", source, row)
        if isinstance(item, (int, np.integer)):
            out.append(int(item))
        elif isinstance(item, float) and item.is_integer():
            out.append(int(item))
        elif isinstance(item, str):
            item = item.strip()
            if not item:
                raise InputError(f"empty label in {value!r}", source, row)
            out.append(int(item) if re.fullmatch(r"-?\d+", item) else item)
        else:
            raise InputError(f"label value {item!r} is not a label name or id", source, row)
    return out


def _check_text(value: Any, source: str, row: int, column: str) -> str:
    if not isinstance(value, str):
        kind = "missing" if value is None else f"not a string ({type(value).__name__} {value!r})"
        raise InputError(f"text in column {column!r} is {kind}", source, row)
    if not value.strip():
        raise InputError(f"text in column {column!r} is empty", source, row)
    return value


def _texts_and_ids(table: InMemoryTable, text_col: str, id_col: Optional[str]) -> Tuple[List[str], Optional[List[str]]]:
    texts = [_check_text(values.get(text_col), table.source, number, text_col) for number, values in table.rows]
    if id_col is None:
        return texts, None
    return texts, ["" if values.get(id_col) is None else str(values.get(id_col)) for _, values in table.rows]


def _wide_labels(table: InMemoryTable, wide_cols: List[str], label_names: Optional[Sequence[str]],
                 named_by_option: bool) -> Tuple[List[str], np.ndarray]:
    """Label names and the 0/1 matrix of a wide-layout table (one column per label)."""
    source = table.source
    if label_names and not named_by_option and len(label_names) == len(wide_cols) and not table.has_header:
        names = list(label_names)  # headerless wide file: names come from the names file
    elif label_names:
        # Labels decided elsewhere (train split): columns must match them by name.
        missing = [n for n in label_names if n not in wide_cols]
        if missing:
            raise InputError(f"label columns missing: {', '.join(missing)} (columns: {', '.join(table.columns)})", source)
        wide_cols = names = list(label_names)
    else:
        names = list(wide_cols)
    labels = np.zeros((len(table.rows), len(wide_cols)), dtype=np.float32)
    for i, (number, values) in enumerate(table.rows):
        for j, column in enumerate(wide_cols):
            v = column_rules.bool_value(values.get(column))
            if v is None:
                raise InputError(
                    f"label column {column!r} holds {values.get(column)!r}; wide-layout labels must be 0/1 or true/false",
                    source, number,
                )
            labels[i, j] = v
    return names, labels


def _infer_label_names(parsed: List[List[Any]], list_col: str, label_id_base: int, source: str) -> List[str]:
    """Label names when none were given: ids name themselves (id == index + base), names are sorted."""
    ints = [x for items in parsed for x in items if isinstance(x, int)]
    strs = [x for items in parsed for x in items if isinstance(x, str)]
    if ints and strs:
        raise InputError(f"column {list_col!r} mixes label ids and names; pass --label-names to map ids to names", source)
    if ints:
        low = min(ints)
        if low < label_id_base:
            raise InputError(f"label id {low} is below the first id {label_id_base}", source)
        # Keep id == index + base so that the other splits map the same way.
        known = [str(i) for i in range(label_id_base, max(ints) + 1)]
    else:
        known = sorted(set(strs))
    if not known:
        raise InputError(f"column {list_col!r} holds no labels at all", source)
    return known


def _label_index(item: Any, known: List[str], index: Dict[str, int], label_id_base: int, source: str, row: int) -> int:
    if isinstance(item, int):
        j = item - label_id_base
        if not 0 <= j < len(known):
            raise InputError(
                f"label id {item} is out of range: there are {len(known)} label names "
                f"(ids {label_id_base}..{label_id_base + len(known) - 1})", source, row,
            )
        return j
    if item not in index:
        raise InputError(
            f"label {item!r} is not one of the {len(known)} known labels ({', '.join(known[:10])}"
            f"{', ...' if len(known) > 10 else ''})", source, row,
        )
    return index[item]


def _list_labels(table: InMemoryTable, list_col: str, label_names: Optional[Sequence[str]],
                 label_id_base: int) -> Tuple[List[str], np.ndarray]:
    """Label names and the 0/1 matrix of a list-layout table (one column of names or ids)."""
    source = table.source
    parsed = [_split_label_value(values.get(list_col), source, number) for number, values in table.rows]
    known = list(label_names) if label_names else _infer_label_names(parsed, list_col, label_id_base, source)
    index = {name: j for j, name in enumerate(known)}
    labels = np.zeros((len(parsed), len(known)), dtype=np.float32)
    for i, ((number, _), items) in enumerate(zip(table.rows, parsed)):
        for item in items:
            labels[i, _label_index(item, known, index, label_id_base, source, number)] = 1.0
    return known, labels


def labelled_from_table(table: InMemoryTable, where: LabelLayout, label_names: Optional[Sequence[str]]) -> LabelledData:
    """Decide the columns (``batch.columns``, the rule every command shares), then read texts and labels."""
    source = table.source
    if not table.rows:
        raise InputError("no data rows (empty split)", source)
    all_rows = [values for _, values in table.rows]
    sample = all_rows[:DETECT_SAMPLE]
    text_col = column_rules.text_column(table.columns, sample, explicit=where.text_column, source=source)
    id_col = column_rules.id_column(table.columns, explicit=where.id_column, exclude=[text_col], source=source)
    found = column_rules.label_columns(
        table.columns, sample, taken=[text_col, id_col], layout=where.layout, wide=where.label_columns,
        list_column=where.label_column, names_known=bool(label_names), source=source,
    )
    if id_col is None and found.list_column is not None and not where.id_column:
        id_col = column_rules.unique_leftover_column(table.columns, [text_col, found.list_column], all_rows)
    texts, ids = _texts_and_ids(table, text_col, id_col)
    if found.wide is not None:
        names, labels = _wide_labels(table, found.wide, label_names, named_by_option=bool(where.label_columns))
    else:
        assert found.list_column is not None
        known = label_names or table.schema_label_names
        names, labels = _list_labels(table, found.list_column, known, where.label_id_base)
    return LabelledData(texts, labels, names, ids, source)


# --------------------------------------------------------------------------- public API


def read_labelled_file(
    path: str,
    *,
    format: Optional[str] = None,
    header: Optional[bool] = None,
    label_names: Optional[Sequence[str]] = None,
    **layout: Any,
) -> LabelledData:
    """Read one labelled split from a CSV/TSV/JSONL/Parquet file (optionally .gz).

    ``layout`` takes ``LabelLayout``'s fields (text_column, layout, label_columns,
    label_column, id_column, label_id_base). ``label_names`` fixes the label set and order
    (from ``--label-names`` or from the train split); list-layout integer ids index it.
    Raises ``InputError`` naming the file and row for anything that would otherwise be
    guessed or dropped.
    """
    return labelled_from_table(_read_file(path, format, header), LabelLayout(**layout), label_names)


def hold_out(data: LabelledData, fraction: float, seed: int) -> Tuple[LabelledData, LabelledData]:
    """Split ``data`` into (train, validation) with a seeded shuffle; validation gets ``fraction``."""
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"--validation-fraction {fraction}: use a number between 0 and 1")
    n = len(data)
    n_val = int(round(n * fraction))
    if n_val < 1 or n - n_val < 1:
        raise InputError(
            f"{n} rows are too few to hold out a validation fraction of {fraction}; pass --validation FILE",
            data.source,
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
    return (
        data.subset(train_idx, f"{data.source} (train part)"),
        data.subset(val_idx, f"{data.source} (held-out {fraction:g} as validation, seed {seed})"),
    )


def labels_without_positives(data: LabelledData) -> List[str]:
    """Names of labels with no positive example in ``data`` (the model cannot learn them)."""
    counts = data.labels.sum(axis=0)
    return [name for name, c in zip(data.label_names, counts) if c == 0]
