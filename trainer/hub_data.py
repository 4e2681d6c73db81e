"""Labelled data from the Hugging Face hub or a ``datasets.save_to_disk`` folder.

Hub datasets come as splits with names of their own (``dev``, ``valid``...) and often carry
their label names in a ``ClassLabel`` schema (hub ``go_emotions``), so ids need no names
file there. The rows of each split go through the same column and label rules as files
(``data``), and the train split decides the labels; the others must agree.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

from mlbert.io import columns as column_rules
from mlbert.errors import InputError, UsageError, first_line
from mlbert.trainer.data import LabelLayout, LabelledData, labelled_from_table, InMemoryTable

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
    label_names: Optional[Sequence[str]] = None,
    **layout: Any,
) -> Dict[str, LabelledData]:
    """Read train/validation/test from a hub dataset (``name``, ``config``) or a ``save_to_disk`` folder.

    ``layout`` takes ``LabelLayout``'s fields, as for ``read_labelled_file``.

    Returns a dict with the key ``train`` and, when the dataset has them, ``validation``
    and ``test`` (``dev``/``valid`` count as validation). Label names come from the
    dataset's ``ClassLabel`` schema when it has one (hub ``go_emotions``), so ids need
    no names file there. The train split decides the labels; the others must agree.
    """
    where = LabelLayout(**layout)
    found = _named_splits(_load(name, config), name)
    label = f"{name}{':' + config if config else ''}"
    result: Dict[str, LabelledData] = {}
    names = list(label_names) if label_names else None
    for role in ("train", "validation", "test"):
        if role not in found:
            continue
        split_name, ds = found[role]
        table = _split_table(ds, f"{label}[{split_name}]", where.label_column if names is None else None,
                             find_schema_names=names is None)
        split = labelled_from_table(table, where, names)
        names = split.label_names
        result[role] = split
    return result


def _load(name: str, config: Optional[str]) -> Any:
    """The DatasetDict of a hub dataset or a ``save_to_disk`` folder (one Dataset becomes its train split)."""
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
    return loaded


def _named_splits(loaded: Any, name: str) -> Dict[str, Any]:
    """role (train/validation/test) -> (split name, Dataset), by the usual split names."""
    found: Dict[str, Any] = {}
    for role, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in loaded:
                found[role] = (alias, loaded[alias])
                break
    if "train" not in found:
        raise InputError(f"dataset has no train split (splits: {', '.join(loaded.keys())})", name)

    return found


def _split_table(ds: Any, source: str, label_column: Optional[str], find_schema_names: bool) -> InMemoryTable:
    """A Dataset's rows as a table; label names from its ClassLabel schema when they are still unknown."""
    columns = list(ds.column_names)
    data = ds.to_dict()
    rows = [(i + 1, {c: data[c][i] for c in columns}) for i in range(ds.num_rows)]
    table = InMemoryTable(source, columns, rows, True)
    if find_schema_names:
        guess_col = label_column or next((c for c in columns if c.lower() in column_rules.LABEL_COLUMN_NAMES), None)
        table.schema_label_names = _schema_label_names(ds.features, guess_col)
    return table
