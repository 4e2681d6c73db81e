"""``mlb-train --soup RUN1 --soup RUN2 ... -o OUT``: one model whose weights are the average of finished runs.

Two fine-tunings of the same recipe from the same base, with different seeds, usually end
in one basin of the loss, and the uniform average of their weights (Wortsman et al. 2022,
"Model soups") often scores better than either, at the inference cost of one model. This
averages the runs' weights, then does what the end of a training does: validation and
test probabilities, thresholds tuned on validation, and a complete output folder
(``mlb.json``, ``metrics.json``, the report) that ``mlb-export`` takes like any other.

The runs must be mlb-train outputs of one architecture and head, for the same labels and
base model (a soup of unrelated fine-tunings is not one basin, and is refused). The data
options name the data the runs were trained on: the validation split tunes the
thresholds, the test split is scored, the training split gives the label counts of the
report. Preprocessing and maximum length are the runs' own (they must agree).
``metrics.json``'s ``training.soup`` lists the runs with their seeds, validation scores and
seconds; ``train_seconds`` is the sum of theirs, what the model cost to train.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List

from mlbert.errors import ModelFileError, UsageError
from mlbert.modelfile import CheckpointConfig

from mlbert.trainer.checkpoint_soup import WEIGHTS_FILE, average_weights, load_weights
from mlbert.trainer.outputs import prepare_output, write_outputs
from mlbert.trainer.splits import check_splits, load_splits, score_at_tuned_thresholds
from mlbert.trainer.torch_checkpoint import checkpoint_probabilities, load_checkpoint
from mlbert.trainer.train_options import TrainOptions

Log = Callable[[str], None]


def soup_runs(opts: TrainOptions, log: Log) -> Dict[str, Any]:
    """Average ``opts.soup``'s weights, score the result on the data options' splits, write ``opts.output``."""
    started = time.time()
    runs = list(opts.soup or [])
    configs = _check_runs(runs)
    first = configs[0]
    splits = load_splits(opts, log)
    missing = check_splits(splits, log)
    if splits["train"].label_names != first.label_names:
        raise UsageError(f"the data's labels ({', '.join(splits['train'].label_names)}) are not the runs' "
                         f"({', '.join(first.label_names)}): pass the data the runs were trained on")
    prepare_output(opts)
    model, tokenizer = load_checkpoint(runs[0], local_files_only=True)
    load_weights(model, average_weights(runs))
    log(f"Averaged the weights of {len(runs)} runs: {', '.join(runs)}")
    opts = replace(opts, preprocessing=first.preprocessing, max_length=first.max_length,
                   **_head_options(first.head), extra_record={"soup": _soup_record(runs, configs)})

    def probabilities(role: str) -> Any:
        return checkpoint_probabilities(model, tokenizer, opts.preprocessing.apply(splits[role].texts), opts.max_length)

    val_probs = probabilities("validation")
    test_probs = probabilities("test") if "test" in splits else None
    metrics = score_at_tuned_thresholds(splits, val_probs, test_probs, opts.threshold_objective)
    metrics["training"] = _training_block(splits, opts.extra_record["soup"], missing)
    base = first.provenance.get("base_model") or runs[0]
    write_outputs(opts, model, tokenizer, base, splits, metrics, [], val_probs, test_probs, started)
    log(f"Wrote {opts.output} (thresholds tuned for {opts.threshold_objective}).")
    return metrics


def _check_runs(runs: List[str]) -> List[CheckpointConfig]:
    """Every run an mlb-train output with weights; same labels, head, preprocessing, length and base model."""
    configs = []
    for run in runs:
        if not os.path.isfile(os.path.join(run, WEIGHTS_FILE)):
            raise ModelFileError(f"{run}: no {WEIGHTS_FILE} (pass the output folders of finished mlb-train runs)")
        configs.append(CheckpointConfig.load(run))
    first = configs[0]
    for run, config in zip(runs[1:], configs[1:]):
        for what, mine, theirs in (
            ("labels", config.label_names, first.label_names),
            ("head", config.head or {"pooling": "cls"}, first.head or {"pooling": "cls"}),
            ("preprocessing", config.preprocessing.to_dict(), first.preprocessing.to_dict()),
            ("max length", config.max_length, first.max_length),
            ("base model", config.provenance.get("base_model"), first.provenance.get("base_model")),
        ):
            if mine != theirs:
                raise UsageError(f"--soup: {run} has other {what} than {runs[0]} ({mine!r} against {theirs!r}); "
                                 "average runs of one recipe from one base model")
        if _config_json(run) != _config_json(runs[0]):
            raise UsageError(f"--soup: {run} is not the same architecture as {runs[0]} (config.json differs)")
    return configs


def _config_json(run: str) -> Dict[str, Any]:
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    return {k: v for k, v in config.items() if k not in ("_name_or_path", "transformers_version")}


def _head_options(head: Any) -> Dict[str, Any]:
    """TrainOptions' head fields from a run's ``mlb.json`` head (absent: the architecture's own)."""
    head = head or {"pooling": "cls"}
    if head.get("pooling") == "label-tokens":
        return {"pooling": "cls", "label_input": True, "label_token": head.get("label_token", "first")}
    return {"pooling": head.get("pooling", "cls"), "label_input": False}


def _soup_record(runs: List[str], configs: List[CheckpointConfig]) -> Dict[str, Any]:
    entries = []
    for run, config in zip(runs, configs):
        with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        training, validation = metrics.get("training", {}), metrics["validation"]["by_objective"]
        entries.append({
            "run": run, "seed": config.provenance.get("seed"), "train_seconds": training.get("train_seconds"),
            "total_seconds": training.get("total_seconds"), "epochs_run": training.get("epochs_run"),
            "validation": {"samples_jaccard": validation["jaccard"]["samples_jaccard"],
                           "macro_f1": validation["label-f1"]["macro_f1"]},
        })
    return {"runs": entries}


def _training_block(splits: Dict[str, Any], record: Dict[str, Any], missing: List[str]) -> Dict[str, Any]:
    train = splits["train"]
    seconds = [r["train_seconds"] for r in record["runs"] if r["train_seconds"] is not None]
    epochs = [r["epochs_run"] for r in record["runs"] if r["epochs_run"] is not None]
    return {
        "train_rows": len(train), "validation_rows": len(splits["validation"]),
        "test_rows": len(splits["test"]) if "test" in splits else 0,
        "train_seconds": round(sum(seconds), 1), "global_step": None,
        "epochs_run": round(sum(epochs) / len(epochs), 3) if epochs else None,
        "best_checkpoint": None, "metric_for_best": None, "best_metric": None, "device": "cpu", "processes": 1,
        "precision": "fp32", "train_loss": None, "labels_without_train_positives": missing,
        "train_label_counts": {n: int(c) for n, c in zip(train.label_names, train.labels.sum(axis=0))},
    }
