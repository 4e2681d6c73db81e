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
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..batch.errors import InputError, UsageError, first_line

LAYOUTS = ("auto", "wide", "list")

# Column names that hold the text, in order of preference (compared case-insensitively).
TEXT_COLUMN_NAMES = (
    "text", "tweet", "sentence", "comment", "comment_text", "content", "body", "message",
    "review", "document", "utterance", "post", "title", "input", "content_text",
)
# Column names that hold a list of labels (list layout).
LABEL_COLUMN_NAMES = ("labels", "label", "emotions", "emotion", "tags", "categories", "classes", "label_ids")

_TRUE = {"1", "true", "t", "yes", "y", "1.0"}
_FALSE = {"0", "false", "f", "no", "n", "0.0"}
_INT_LIST_RE = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")
_DETECT_SAMPLE = 2000


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


@dataclass
class _Table:
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


def _read_parquet(path: str) -> _Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with the train extra
        raise UsageError("reading Parquet needs pyarrow: pip install 'mlbert[train]'") from None
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputError(f"cannot read Parquet ({first_line(exc)})", path) from None
    columns = list(table.column_names)
    data = table.to_pydict()
    n = table.num_rows
    rows = [(i + 1, {c: data[c][i] for c in columns}) for i in range(n)]
    return _Table(path, columns, rows, True)


def _read_with_readers(path: str, format: Optional[str], header: Optional[bool]) -> _Table:
    from ..batch.readers import open_table

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
    return _Table(path, columns, rows, has_header)


def _read_file(path: str, format: Optional[str], header: Optional[bool]) -> _Table:
    from ..batch.formats import detect_format

    if path != "-" and not os.path.exists(path):
        raise InputError("no such file", path)
    if path != "-" and os.path.isdir(path):
        raise InputError("is a folder, not a file (for a saved dataset use --dataset)", path)
    fmt = detect_format(path, format)
    if fmt.format == "parquet":
        if fmt.gzip:
            raise InputError("gzip-compressed Parquet is not supported (Parquet compresses itself)", path)
        return _read_parquet(path)
    return _read_with_readers(path, format, header)


# --------------------------------------------------------------------------- detection


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _bool_value(value: Any) -> Optional[float]:
    """1.0/0.0 for a 0/1 or true/false value, None for anything else."""
    if isinstance(value, bool):
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


def _looks_like_label_list(value: Any) -> bool:
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


def _find_column(columns: Sequence[str], wanted: str, source: str, what: str) -> str:
    if wanted in columns:
        return wanted
    lowered = {c.lower(): c for c in columns}
    if wanted.lower() in lowered:
        return lowered[wanted.lower()]
    # A 1-based index names a column of a headerless file ("--text-column 1").
    if wanted.isdigit() and 1 <= int(wanted) <= len(columns):
        return columns[int(wanted) - 1]
    raise InputError(f"no {what} column {wanted!r}; the columns are: {', '.join(columns)}", source)


def _detect_text_column(table: _Table) -> str:
    lowered = {c.lower(): c for c in table.columns}
    for name in TEXT_COLUMN_NAMES:
        if name in lowered:
            return lowered[name]
    # Otherwise the column whose values look most like prose: most letters on average.
    sample = table.rows[:_DETECT_SAMPLE]
    best, best_score = None, 0.0
    for column in table.columns:
        values = [v.get(column) for _, v in sample]
        strings = [v for v in values if isinstance(v, str)]
        if len(strings) < max(1, len(values) // 2):
            continue
        letters = sum(sum(ch.isalpha() for ch in s) for s in strings) / max(1, len(strings))
        spaces = sum(s.count(" ") for s in strings) / max(1, len(strings))
        score = letters + 5 * spaces
        if score > best_score:
            best, best_score = column, score
    if best is None or best_score < 3:
        raise InputError(
            f"cannot tell which column holds the text; pass --text-column (columns: {', '.join(table.columns)})",
            table.source,
        )
    return best


def _detect_id_column(table: _Table, taken: Iterable[str]) -> Optional[str]:
    taken = set(taken)
    for column in table.columns:
        if column in taken:
            continue
        low = column.lower()
        if low in ("id", "idx", "index", "guid", "uid") or low.endswith("_id") or low.endswith(" id"):
            if low == "label_id" or low in LABEL_COLUMN_NAMES:
                continue
            return column
    return None


def _column_is_boolean(table: _Table, column: str) -> bool:
    seen = False
    for _, values in table.rows[:_DETECT_SAMPLE]:
        value = values.get(column)
        if _bool_value(value) is None:
            return False
        seen = True
    return seen


def _column_is_label_list(table: _Table, column: str) -> bool:
    seen = False
    for _, values in table.rows[:_DETECT_SAMPLE]:
        value = values.get(column)
        if _is_blank(value):
            continue
        if not _looks_like_label_list(value):
            return False
        seen = True
    return seen


def _looks_wide(table: _Table, rest: List[str], list_hinted: bool) -> bool:
    """Wide when every leftover column is 0/1, or (several columns, no list hint) most of them are.

    The second case sends a wide file with one bad value to the wide reader, whose error
    names the bad cell, instead of misreading a 0/1 column as a list of ids.
    """
    boolean = sum(_column_is_boolean(table, c) for c in rest)
    if len(rest) == 1:
        return boolean == 1 and not list_hinted
    if boolean == len(rest):
        return True
    return not list_hinted and boolean * 2 >= len(rest)


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


def _labelled_from_table(
    table: _Table,
    *,
    text_column: Optional[str],
    layout: str,
    label_columns: Optional[Sequence[str]],
    label_column: Optional[str],
    label_names: Optional[Sequence[str]],
    id_column: Optional[str],
    label_id_base: int,
) -> LabelledData:
    source = table.source
    if layout not in LAYOUTS:
        raise UsageError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not table.rows:
        raise InputError("no data rows (empty split)", source)
    columns = table.columns

    text_col = _find_column(columns, text_column, source, "text") if text_column else _detect_text_column(table)
    if id_column:
        id_col: Optional[str] = _find_column(columns, id_column, source, "id")
    else:
        id_col = _detect_id_column(table, [text_col])

    # ---- choose the layout and the label column(s)
    wide_cols: Optional[List[str]] = None
    list_col: Optional[str] = None
    if label_columns:
        wide_cols = [_find_column(columns, c, source, "label") for c in label_columns]
        if layout == "list":
            raise UsageError("--labels lists wide-layout label columns; it cannot be used with --layout list")
    elif label_column:
        list_col = _find_column(columns, label_column, source, "label")
        if layout == "wide":
            raise UsageError("--label-column names a list-layout column; it cannot be used with --layout wide")
    else:
        rest = [c for c in columns if c not in (text_col, id_col)]
        if not rest:
            raise InputError(f"no label columns besides the text column {text_col!r}", source)
        named_list = [c for c in rest if c.lower() in LABEL_COLUMN_NAMES]
        if layout == "wide":
            wide_cols = rest
        elif layout == "auto" and _looks_wide(table, rest, bool(label_names or named_list)):
            wide_cols = rest
        elif named_list:
            list_col = named_list[0]
        else:
            candidates = [c for c in rest if _column_is_label_list(table, c)]
            if len(candidates) == 1:
                list_col = candidates[0]
            elif len(rest) == 1:
                list_col = rest[0]
            else:
                raise InputError(
                    "cannot tell which column holds the labels; pass --label-column (list layout) or "
                    f"--labels (wide layout) (columns: {', '.join(columns)})",
                    source,
                )

    if id_col is None and list_col is not None and not id_column:
        # A headerless file's leftover column with one distinct value per row is an id (GoEmotions).
        others = [c for c in columns if c not in (text_col, list_col)]
        if len(others) == 1:
            values = [v.get(others[0]) for _, v in table.rows]
            if all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values) and len(set(values)) == len(values):
                id_col = others[0]

    texts: List[str] = []
    ids: Optional[List[str]] = [] if id_col else None

    if wide_cols is not None:
        if label_names and not label_columns and len(label_names) == len(wide_cols) and not table.has_header:
            names = list(label_names)  # headerless wide file: names come from the names file
        elif label_names:
            # Labels decided elsewhere (train split): columns must match them by name.
            by_name = {c: c for c in wide_cols}
            missing = [n for n in label_names if n not in by_name]
            if missing:
                raise InputError(
                    f"label columns missing: {', '.join(missing)} (columns: {', '.join(columns)})", source
                )
            wide_cols = list(label_names)
            names = list(label_names)
        else:
            names = list(wide_cols)
        labels = np.zeros((len(table.rows), len(wide_cols)), dtype=np.float32)
        for i, (number, values) in enumerate(table.rows):
            texts.append(_check_text(values.get(text_col), source, number, text_col))
            if ids is not None:
                ids.append("" if values.get(id_col) is None else str(values.get(id_col)))
            for j, column in enumerate(wide_cols):
                v = _bool_value(values.get(column))
                if v is None:
                    raise InputError(
                        f"label column {column!r} holds {values.get(column)!r}; wide-layout labels must be 0/1 or true/false",
                        source,
                        number,
                    )
                labels[i, j] = v
        return LabelledData(texts, labels, names, ids, source)

    # ---- list layout
    assert list_col is not None
    parsed: List[List[Any]] = []
    for number, values in table.rows:
        texts.append(_check_text(values.get(text_col), source, number, text_col))
        if ids is not None:
            ids.append("" if values.get(id_col) is None else str(values.get(id_col)))
        parsed.append(_split_label_value(values.get(list_col), source, number))

    known = list(label_names) if label_names else (list(table.schema_label_names) if table.schema_label_names else None)
    if known is None:
        ints = [x for items in parsed for x in items if isinstance(x, int)]
        strs = [x for items in parsed for x in items if isinstance(x, str)]
        if ints and strs:
            raise InputError(
                f"column {list_col!r} mixes label ids and names; pass --label-names to map ids to names", source
            )
        if ints:
            low = min(ints)
            if low < label_id_base:
                raise InputError(f"label id {low} is below the first id {label_id_base}", source)
            # Ids without names: name each id by itself and keep id == index so that the
            # other splits map the same way.
            known = [str(i) for i in range(label_id_base, max(ints) + 1)]
        else:
            known = sorted(set(strs))
        if not known:
            raise InputError(f"column {list_col!r} holds no labels at all", source)
    index = {name: j for j, name in enumerate(known)}
    labels = np.zeros((len(parsed), len(known)), dtype=np.float32)
    for i, ((number, _), items) in enumerate(zip(table.rows, parsed)):
        for item in items:
            if isinstance(item, int):
                j = item - label_id_base
                if not 0 <= j < len(known):
                    raise InputError(
                        f"label id {item} is out of range: there are {len(known)} label names "
                        f"(ids {label_id_base}..{label_id_base + len(known) - 1})",
                        source,
                        number,
                    )
            else:
                if item not in index:
                    raise InputError(
                        f"label {item!r} is not one of the {len(known)} known labels ({', '.join(known[:10])}"
                        f"{', ...' if len(known) > 10 else ''})",
                        source,
                        number,
                    )
                j = index[item]
            labels[i, j] = 1.0
    return LabelledData(texts, labels, known, ids, source)


# --------------------------------------------------------------------------- public API


def read_labelled_file(
    path: str,
    *,
    format: Optional[str] = None,
    text_column: Optional[str] = None,
    layout: str = "auto",
    label_columns: Optional[Sequence[str]] = None,
    label_column: Optional[str] = None,
    label_names: Optional[Sequence[str]] = None,
    header: Optional[bool] = None,
    id_column: Optional[str] = None,
    label_id_base: int = 0,
) -> LabelledData:
    """Read one labelled split from a CSV/TSV/JSONL/Parquet file (optionally .gz).

    ``label_names`` fixes the label set and order (from ``--label-names`` or from the train
    split); list-layout integer ids index it (``label_id_base`` is the first id, 0 for
    GoEmotions, 1 for XED). Raises ``InputError`` naming the file and row for anything
    that would otherwise be guessed or dropped.
    """
    table = _read_file(path, format, header)
    return _labelled_from_table(
        table,
        text_column=text_column,
        layout=layout,
        label_columns=label_columns,
        label_column=label_column,
        label_names=label_names,
        id_column=id_column,
        label_id_base=label_id_base,
    )


SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val", "development"),
    "test": ("test", "testing"),
}


def _schema_label_names(features: Any, column: Optional[str]) -> Optional[List[str]]:
    """ClassLabel names from a datasets feature (``Sequence(ClassLabel)`` or ``ClassLabel``)."""
    if column is None or features is None or column not in features:
        return None
    feature = features[column]
    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:
        inner = feature[0]
    for candidate in (feature, inner):
        names = getattr(candidate, "names", None)
        if names:
            return list(names)
    return None


def read_dataset_splits(
    name: str,
    config: Optional[str] = None,
    *,
    text_column: Optional[str] = None,
    layout: str = "auto",
    label_columns: Optional[Sequence[str]] = None,
    label_column: Optional[str] = None,
    label_names: Optional[Sequence[str]] = None,
    id_column: Optional[str] = None,
    label_id_base: int = 0,
) -> Dict[str, LabelledData]:
    """Read train/validation/test from a hub dataset (``name``, ``config``) or a ``save_to_disk`` folder.

    Returns a dict with the key ``train`` and, when the dataset has them, ``validation``
    and ``test`` (``dev``/``valid`` count as validation). Label names come from the
    dataset's ``ClassLabel`` schema when it has one (hub ``go_emotions``), so ids need
    no names file there. The train split decides the labels; the others must agree.
    """
    try:
        import datasets
    except ImportError:  # pragma: no cover
        raise UsageError("reading datasets needs the datasets package: pip install 'mlbert[train]'") from None

    try:
        if os.path.isdir(name):
            loaded = datasets.load_from_disk(name)
        else:
            loaded = datasets.load_dataset(name, config)
    except FileNotFoundError as exc:
        raise InputError(f"dataset not found ({first_line(exc)})", name) from None
    except Exception as exc:  # hub errors come in many types; one line is what the user needs
        raise InputError(f"cannot load dataset{' config ' + repr(config) if config else ''}: {first_line(exc)}",
                         name) from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})

    found: Dict[str, Any] = {}
    for role, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in loaded:
                found[role] = (alias, loaded[alias])
                break
    if "train" not in found:
        raise InputError(f"dataset has no train split (splits: {', '.join(loaded.keys())})", name)

    label = f"{name}{':' + config if config else ''}"
    result: Dict[str, LabelledData] = {}
    names = list(label_names) if label_names else None
    for role in ("train", "validation", "test"):
        if role not in found:
            continue
        split_name, ds = found[role]
        columns = list(ds.column_names)
        data = ds.to_dict()
        rows = [(i + 1, {c: data[c][i] for c in columns}) for i in range(ds.num_rows)]
        table = _Table(f"{label}[{split_name}]", columns, rows, True)
        if names is None:
            guess_col = label_column or next((c for c in columns if c.lower() in LABEL_COLUMN_NAMES), None)
            table.schema_label_names = _schema_label_names(ds.features, guess_col)
        split = _labelled_from_table(
            table,
            text_column=text_column,
            layout=layout,
            label_columns=label_columns,
            label_column=label_column,
            label_names=names,
            id_column=id_column,
            label_id_base=label_id_base,
        )
        names = split.label_names
        result[role] = split
    return result


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
