"""mlb-train's output folder: checked before training, written after it.

The folder is a plain Hugging Face checkpoint (safetensors, no pickled training
arguments) plus ``mlb.json`` (labels, thresholds, preprocessing, provenance),
``metrics.json``, ``history.json`` and ``eval_predictions.npz`` for the report, then the
report itself. Intermediate Trainer checkpoints live in ``checkpoints/``, where
``--resume`` finds them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import shutil
import time
from typing import Any, Dict, List, Optional

import numpy as np

from mlbert.errors import UsageError
from mlbert.io.atomic import write_text_atomic
from mlbert.modelfile import CheckpointConfig, recorded_time

from mlbert.trainer.data import LabelledData
from mlbert.trainer.head import recorded_base_model
from mlbert.trainer.metrics import format_table
from mlbert.trainer.train_options import TrainOptions

CHECKPOINTS_DIR = "checkpoints"


# --------------------------------------------------------------------------- before training


def checkpoint_step(path: Optional[str]) -> Optional[int]:
    """The global step in a Trainer checkpoint folder name (``.../checkpoint-1357``), or None."""
    if not path:
        return None
    name = os.path.basename(os.path.normpath(path))
    prefix = "checkpoint-"
    if name.startswith(prefix) and name[len(prefix):].isdigit():
        return int(name[len(prefix):])
    return None


def last_checkpoint(folder: str) -> Optional[str]:
    """The ``checkpoint-N`` subfolder with the highest N (what the Trainer resumes from)."""
    if not os.path.isdir(folder):
        return None
    steps = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        step = checkpoint_step(name)
        if step is not None and os.path.isdir(path):
            steps.append((step, path))
    return max(steps)[1] if steps else None


def prepare_output(opts: TrainOptions, main: bool = True) -> Optional[str]:
    """Check the output folder; returns the checkpoint to resume from, if any.

    Every process checks; only the main one (``main``) removes old checkpoints or creates
    the folder, so the processes of a torchrun never race on the file system.
    """
    out = opts.output
    ckdir = os.path.join(out, CHECKPOINTS_DIR)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"{out}: the output path is a file, not a folder")
    last = last_checkpoint(ckdir)
    if opts.resume:
        if last is None:
            raise UsageError(f"{out}: --resume found no checkpoint in {ckdir} to continue from")
        return last
    has_model = os.path.isdir(out) and any(
        os.path.exists(os.path.join(out, f)) for f in ("mlb.json", "config.json", CHECKPOINTS_DIR)
    )
    if has_model:
        if not opts.overwrite:
            raise UsageError(
                f"{out} already holds a model or checkpoints; pass --resume to continue that run or --overwrite to replace it"
            )
        if main:
            shutil.rmtree(ckdir, ignore_errors=True)
    if main:
        os.makedirs(out, exist_ok=True)
    return None


# --------------------------------------------------------------------------- after training


def summary_table(metrics: Dict[str, Any]) -> str:
    """validation/test rows at 0.5 and at each objective's thresholds; ``*`` marks the saved ones."""
    rows: Dict[str, Dict[str, Any]] = {}
    chosen = metrics["threshold_objective"]
    for split in ("validation", "test"):
        if split not in metrics:
            continue
        rows[f"{split} @ 0.5"] = metrics[split]["at_0.5"]
        for name, m in metrics[split]["by_objective"].items():
            rows[f"{split} @ {name}{' *' if name == chosen else ''}"] = m
    return format_table(rows)


def write_outputs(
    opts: TrainOptions,
    model: Any,
    tokenizer: Any,
    base: str,
    splits: Dict[str, LabelledData],
    metrics: Dict[str, Any],
    history: List[Dict[str, Any]],
    val_probs: np.ndarray,
    test_probs: Optional[np.ndarray],
    started: float,
) -> None:
    """Write the whole output folder; ``metrics["training"]`` gains ``total_seconds`` (since ``started``)."""
    out = opts.output
    _save_checkpoint(out, model, tokenizer, opts.max_length)
    segment = getattr(model.config, "label_segment", None)
    CheckpointConfig(
        label_names=list(metrics["label_names"]),
        thresholds=list(metrics["thresholds"]),
        preprocessing=opts.preprocessing,
        max_length=opts.max_length,
        threshold_objective=opts.threshold_objective,
        provenance=provenance(opts, base, splits, metrics),
        head=opts.head.describe(segment),
        label_segment=segment,
    ).save(out)

    metrics["training"].update(opts.extra_record)
    metrics["training"]["total_seconds"] = round(time.time() - started, 1)
    write_json(os.path.join(out, "metrics.json"), metrics)
    write_json(os.path.join(out, "history.json"), history)
    _save_predictions(out, splits, val_probs, test_probs)

    from mlbert.trainer.report.training import write_training_report

    write_training_report(out)  # never raises: a failure is written into report.md, the model is saved


def _save_checkpoint(out: str, model: Any, tokenizer: Any, max_length: int) -> None:
    model.config.problem_type = "multi_label_classification"
    # Plain save_pretrained (not Trainer.save_model) so no pickled training_args.bin lands here.
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(out)


def provenance(opts: TrainOptions, base: str, splits: Dict[str, LabelledData], metrics: Dict[str, Any]) -> Dict[str, Any]:
    """How this model was made, for ``mlb.json``: command, data, seed, versions and training settings."""
    return {
        "command": shlex.join(opts.command) if opts.command else None,
        "created": recorded_time(),
        "base_model": recorded_base_model(base),
        "data": {
            role: {"source": split.source, "rows": len(split)} for role, split in splits.items()
        },
        "dataset": {"name": opts.dataset, "config": opts.dataset_config} if opts.dataset else None,
        "seed": opts.seed,
        **opts.extra_record,
        "versions": _versions(),
        "training": {
            "epochs": opts.epochs,
            "max_steps": opts.max_steps,
            "lr": opts.lr,
            "batch_size": opts.batch_size,
            "warmup_ratio": opts.warmup_ratio,
            "weight_decay": opts.weight_decay,
            "pos_weight": opts.pos_weight,
            "loss": opts.loss,
            "asl_gamma_neg": opts.asl_gamma_neg if opts.loss == "asl" else None,
            "asl_gamma_pos": opts.asl_gamma_pos if opts.loss == "asl" else None,
            "asl_clip": opts.asl_clip if opts.loss == "asl" else None,
            "lca_weight": opts.lca_weight,
            "layer_lr_decay": opts.layer_lr_decay,
            "ema_decay": opts.ema_decay,
            "head_bias_init": opts.head_bias_init,
            "pooler": opts.pooler,
            "pooling": opts.pooling,
            "label_input": opts.label_input,
            "label_token": opts.label_token if opts.label_input else None,
            "head_dropout_samples": opts.head_dropout_samples,
            "average_checkpoints": opts.average_checkpoints,
            "metric_for_best": opts.metric_for_best,
            "early_stopping_patience": opts.early_stopping_patience,
            "global_step": metrics["training"]["global_step"],
            # How long it took, and on how many cores, is in metrics.json: what is here must be the same
            # whenever the same training is run again (a rebuild compares the exported bytes).
            "device": "cpu" if str(metrics["training"]["device"]).startswith("cpu") else metrics["training"]["device"],
        },
    }


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("mlbert", "torch", "transformers", "datasets", "tokenizers", "accelerate", "scikit-learn"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def _save_predictions(
    out: str, splits: Dict[str, LabelledData], val_probs: np.ndarray, test_probs: Optional[np.ndarray]
) -> None:
    """``eval_predictions.npz``: what the report plots (read back with ``allow_pickle=False``)."""
    train_labels = splits["train"].labels.astype(np.int64)
    arrays: Dict[str, np.ndarray] = {
        "validation_probabilities": val_probs.astype(np.float32),
        "validation_labels": splits["validation"].labels.astype(np.int8),
        "train_label_counts": train_labels.sum(axis=0),
        "train_cooccurrence": train_labels.T @ train_labels,
    }
    if test_probs is not None and "test" in splits:
        arrays["test_probabilities"] = test_probs.astype(np.float32)
        arrays["test_labels"] = splits["test"].labels.astype(np.int8)
    np.savez_compressed(os.path.join(out, "eval_predictions.npz"), **arrays)


def write_json(path: str, data: Any) -> None:
    """Standard JSON (NaN/inf as null), numpy values as Python ones, replaced atomically."""
    text = json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    write_text_atomic(path, text + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """NaN/inf (a diverged loss, say) become null so that the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
