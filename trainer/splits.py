"""One run's labelled splits: read (files or a hub dataset), checked, tokenised; and scored at tuned thresholds.

mlb-train's stages share these steps: a training run (``train``), each stage of a run with
an intermediate task (``intermediate``) and an average of finished runs (``run_soup``) all
read their data, and score validation and test, the same way.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from mlbert.errors import InputError, UsageError

from mlbert.trainer.data import LabelledData, hold_out, labels_without_positives, read_label_names_file, read_labelled_file
from mlbert.trainer.hf_trainer import tokenized_dataset
from mlbert.trainer.hub_data import read_dataset_splits
from mlbert.trainer.metrics import multilabel_metrics
from mlbert.trainer.thresholds import OBJECTIVES, tune_thresholds
from mlbert.trainer.train_options import TrainOptions

Log = Callable[[str], None]


def load_splits(opts: TrainOptions, log: Callable[[str], None] = lambda s: None) -> Dict[str, LabelledData]:
    """train/validation(/test) as ``LabelledData`` sharing one label list; validation held out if absent."""
    names = read_label_names_file(opts.label_names_file) if opts.label_names_file else None
    common = dict(
        text_column=opts.text_column,
        layout=opts.layout,
        label_columns=opts.labels,
        label_column=opts.label_column,
        id_column=opts.id_column,
        label_id_base=opts.label_id_base,
    )
    if opts.dataset:
        splits = read_dataset_splits(opts.dataset, opts.dataset_config, label_names=names, **common)
    else:
        splits = {"train": read_labelled_file(opts.train, format=opts.format, header=opts.header, label_names=names, **common)}
        names = splits["train"].label_names
        for role in ("validation", "test"):
            path = getattr(opts, role)
            if path:
                splits[role] = read_labelled_file(path, format=opts.format, header=opts.header, label_names=names, **common)
    train = splits["train"]
    if opts.limit_train is not None and opts.limit_train < len(train):
        if opts.limit_train < 1:
            raise UsageError(f"--limit-train must be at least 1, not {opts.limit_train}")
        idx = sorted(random.Random(opts.seed).sample(range(len(train)), opts.limit_train))
        train = train.subset(idx, f"{train.source} (seeded sample of {opts.limit_train} rows)")
    if "validation" not in splits:
        train, splits["validation"] = hold_out(train, opts.validation_fraction, opts.seed)
        log(f"No validation split: held out {len(splits['validation'])} of the training rows (seed {opts.seed}).")
    splits["train"] = train
    if opts.limit_eval is not None:
        if opts.limit_eval < 1:
            raise UsageError(f"--limit-eval must be at least 1, not {opts.limit_eval}")
        for role in ("validation", "test"):
            if role in splits and len(splits[role]) > opts.limit_eval:
                split = splits[role]
                splits[role] = split.subset(range(opts.limit_eval), f"{split.source} (first {opts.limit_eval} rows)")
    return splits



def check_splits(splits: Dict[str, LabelledData], log: Log) -> List[str]:
    """Refuse an empty split; warn about labels without a positive training example (returned)."""
    train_data, val_data, test_data = splits["train"], splits["validation"], splits.get("test")
    for role, split in splits.items():
        if len(split) == 0:
            raise InputError(f"the {role} split has no rows", split.source)
    missing = labels_without_positives(train_data)
    if missing:
        log(f"Warning: no positive example in the training data for label(s): {', '.join(missing)}")
    log(
        f"Data: {len(train_data)} train, {len(val_data)} validation"
        + (f", {len(test_data)} test" if test_data is not None else "")
        + f" rows; {len(train_data.label_names)} labels"
    )
    return missing



def tokenize_splits(tokenizer: Any, splits: Dict[str, LabelledData], opts: TrainOptions,
                    label_segment: Optional[str] = None) -> Dict[str, Any]:
    """train, validation (and test) preprocessed as ``mlb.json`` will say, then tokenised (each text paired
    with ``label_segment`` under ``--label-input``)."""
    pre = opts.preprocessing
    return {
        role: tokenized_dataset(tokenizer, pre.apply(splits[role].texts), splits[role].labels, opts.max_length,
                                label_segment)
        for role in ("train", "validation", "test")
        if role in splits
    }


def score_at_tuned_thresholds(
    splits: Dict[str, LabelledData], val_probs: np.ndarray, test_probs: Optional[np.ndarray], objective: str
) -> Dict[str, Any]:
    """Thresholds tuned on validation for every objective; validation/test metrics at 0.5 and at each.

    ``objective``'s thresholds are the ones saved (``thresholds``, ``tuned``).
    """
    label_names = splits["train"].label_names
    val_data, test_data = splits["validation"], splits.get("test")
    thresholds_by_objective = {name: tune_thresholds(val_data.labels, val_probs, name) for name in OBJECTIVES}
    chosen = thresholds_by_objective[objective]

    def results(y: np.ndarray, probs: np.ndarray) -> Dict[str, Any]:
        by_objective = {
            name: multilabel_metrics(y, probs, t, label_names) for name, t in thresholds_by_objective.items()
        }
        return {
            "at_0.5": multilabel_metrics(y, probs, 0.5, label_names),
            "tuned": by_objective[objective],
            "by_objective": by_objective,
        }

    metrics: Dict[str, Any] = {
        "label_names": label_names,
        "threshold_objective": objective,
        "thresholds": [float(x) for x in chosen],
        "thresholds_by_objective": {k: [float(x) for x in v] for k, v in thresholds_by_objective.items()},
        "validation": results(val_data.labels, val_probs),
    }
    if test_data is not None and test_probs is not None:
        metrics["test"] = results(test_data.labels, test_probs)
    return metrics
