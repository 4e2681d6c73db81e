"""Fine-tune a multi-label classifier with transformers' Trainer and write an mlb checkpoint.

``train`` is the recipe, one named stage per step: load the data, prepare the output
folder, build the model, tokenise, set up the Trainer, fit, predict, tune thresholds,
write the outputs. The stages live where they read best: the new head in ``head``, the
Trainer and its settings in ``hf_trainer``, the output folder in ``outputs``.

What this adds to the classic recipe (pad to 128, batch 8, threshold 0.5):

* dynamic padding (``DataCollatorWithPadding``) and length-grouped batches, which cut the
  time per epoch about 4.3x on 2 CPU cores (all-MiniLM-L6-v2 on ~6.8k English emotion
  tweets, 11 labels: 137 s an epoch at batch 32 against ~590 s at batch 8 padded to 128;
  ``benchmarks/bench_training.py`` reruns defaults against the recipe side by side);
* defaults measured for the small packaged MiniLM (batch 32, lr 1e-4, warmup 10%);
* evaluation every epoch, early stopping on the chosen metric, best checkpoint kept;
* bf16 (or fp16) on CUDA, a fixed seed, ``--resume``;
* optional positive-class weighting in the BCE loss for rare labels;
* thresholds tuned on validation for several objectives, all reported, one saved;
* the preprocessing that the runtime repeats, saved in ``mlb.json``;
* the levers of the second recipe study (docs/RECIPE.md), each an option: mlb's own heads
  (``--pooling mean``, ``--label-input``: ``head_loading``), multi-sample dropout
  (``head_dropout``), an average of the best checkpoints (``checkpoint_soup``), an
  intermediate task first (``intermediate``) and an average of finished runs (``run_soup``).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from mlbert.errors import MlbError

from mlbert.trainer.checkpoint_soup import average_checkpoints
from mlbert.trainer.data import LabelledData
from mlbert.trainer.head import default_base_model, load_model_and_tokenizer, start_new_head
from mlbert.trainer.hf_trainer import (
    EvaluationProbabilities,
    best_checkpoint_metric,
    build_trainer,
    device_settings,
    eval_schedule,
    is_main_process,
    pos_weights,
    sigmoid,
    training_arguments,
    world_size,
)
from mlbert.trainer.outputs import checkpoint_step, prepare_output, write_outputs
from mlbert.trainer.splits import (  # noqa: F401 - load_splits and friends were importable from here
    check_splits,
    load_splits,
    score_at_tuned_thresholds,
    tokenize_splits,
)
from mlbert.trainer.train_options import TrainOptions

Log = Callable[[str], None]


def train(opts: TrainOptions, log: Log = print) -> Dict[str, Any]:
    """Run mlb-train: one training, or an intermediate task then the target (``--intermediate-*``), or an
    average of finished runs (``--soup``); writes the output folder and returns its metrics.json."""
    opts.check()
    if opts.soup is not None:
        from mlbert.trainer.run_soup import soup_runs

        return soup_runs(opts, log)
    if opts.intermediate is not None:
        from mlbert.trainer.intermediate import train_in_two_stages

        return train_in_two_stages(opts, log, train_stage)
    return train_stage(opts, log)


def train_stage(opts: TrainOptions, log: Log = print) -> Dict[str, Any]:
    """Run one training and write the output folder; returns the metrics written to metrics.json.

    Under ``torchrun --nproc_per_node N`` (or ``accelerate launch``) every process trains
    its share and takes part in evaluation and prediction (the Trainer gathers the
    predictions of all processes, in dataset order); only the main process tunes the
    thresholds, writes the output folder and returns the metrics; the others return {}.
    """
    opts.check()
    started = time.time()
    main_process = is_main_process()
    processes = world_size()
    if not main_process:
        log = lambda line: None  # noqa: E731 - one copy of every message, from the main process
    splits = load_splits(opts, log)
    missing = check_splits(splits, log)
    resume_from = prepare_output(opts, main=main_process)
    base = opts.base_model or default_base_model()

    from transformers import set_seed

    set_seed(opts.seed)
    run = _RunSetup(opts, splits, base, processes, log)
    log(_training_line(base, run.device, processes, run.schedule, resume_from))
    train_output, train_seconds = fit(run.trainer, resume_from)
    average, soup_probs = _average_checkpoints(opts, run, log)
    val_probs, test_probs = predict_splits(run.trainer, run.evaluations, run.datasets, splits, processes, log,
                                           validation=soup_probs)
    if not run.trainer.is_world_process_zero():
        # No collective follows: the main process tunes and writes alone, and a failure
        # there cannot leave this process waiting at a barrier.
        return {}

    metrics = score_at_tuned_thresholds(splits, val_probs, test_probs, opts.threshold_objective)
    metrics["training"] = training_summary(
        opts, splits, run.trainer.state, train_output, train_seconds,
        metric=run.metric, device=run.device, processes=processes, missing=missing,
    )
    if average is not None:
        metrics["training"]["checkpoint_average"] = average
    write_outputs(opts, run.trainer.model, run.tokenizer, base, splits, metrics, run.trainer.state.log_history,
                  val_probs, test_probs, started)
    log(f"Wrote {opts.output} (thresholds tuned for {opts.threshold_objective}).")
    return metrics


class _RunSetup:
    """The model, tokenised splits and Trainer of one training, built in mlb-train's order."""

    def __init__(self, opts: TrainOptions, splits: Dict[str, LabelledData], base: str, processes: int,
                 log: Log) -> None:
        self.device = device_settings(opts.device)
        self.model, self.tokenizer, new_head = load_model_and_tokenizer(base, splits["train"].label_names, opts.head,
                                                                        opts.max_length)
        self.datasets = tokenize_splits(self.tokenizer, splits, opts, getattr(self.model.config, "label_segment", None))
        self.schedule = eval_schedule(len(splits["train"]), opts, processes)
        self.metric = best_checkpoint_metric(opts.metric_for_best)
        self.evaluations = EvaluationProbabilities()
        weights = pos_weights(splits["train"].labels, opts.pos_weight)
        self.trainer = build_trainer(
            training_arguments(opts, self.schedule, self.device, self.metric), self.model, self.tokenizer,
            self.datasets, self.evaluations, early_stopping_patience=opts.early_stopping_patience, weights=weights,
            log=log, loss=opts.loss_settings, layer_lr_decay=opts.layer_lr_decay, ema_decay=opts.ema_decay,
            head_dropout_samples=opts.head_dropout_samples, average_checkpoints=opts.average_checkpoints,
        )
        # After the Trainer (which re-seeds) and only for a new head; on --resume the
        # checkpoint's weights replace these anyway.
        if new_head:
            start_new_head(self.model, splits["train"].labels, weights, pooler=opts.pooler,
                           head_bias_init=opts.head_bias_init, log=log)


def _average_checkpoints(opts: TrainOptions, run: _RunSetup, log: Log) -> Tuple[Optional[Dict[str, Any]],
                                                                             Optional[np.ndarray]]:
    """``--average-checkpoints K``: the soup's record and, when it is kept, its validation probabilities."""
    if opts.average_checkpoints <= 1:
        return None, None
    return average_checkpoints(run.trainer, run.evaluations, run.datasets["validation"], opts.average_checkpoints,
                               run.metric, log)


# --------------------------------------------------------------------------- training and prediction


def _training_line(base: str, device: Dict[str, Any], processes: int, schedule: Dict[str, int],
                   resume_from: Optional[str]) -> str:
    return (
        f"Training {base} on {device['device_name']}"
        + (" (bf16)" if device["bf16"] else " (fp16)" if device["fp16"] else "")
        + (f" x {processes} processes" if processes > 1 else "")
        + f": {schedule['total_steps']} steps, evaluating every {schedule['eval_steps']}"
        + (f"; resuming from {resume_from}" if resume_from else "")
    )


def fit(trainer: Any, resume_from: Optional[str]) -> Tuple[Any, float]:
    """``trainer.train()``; returns its output and the seconds it took. The best checkpoint is loaded after."""
    started = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="mtime may not be reliable")
        output = trainer.train(resume_from_checkpoint=resume_from)
    return output, time.time() - started


def predict_splits(
    trainer: Any,
    evaluations: EvaluationProbabilities,
    datasets: Dict[str, Any],
    splits: Dict[str, LabelledData],
    processes: int,
    log: Log,
    validation: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Validation and test probabilities of the best checkpoint (or of the kept checkpoint average,
    whose validation probabilities ``validation`` holds), in split order.

    Every process must take part in predict (it gathers across processes); the gathered
    arrays are the whole split, in order, on every process. The choice to reuse the best
    evaluation's validation probabilities is the same on every process (same state), so
    none waits for a predict the others skip. (The final predictions pass through
    ``compute_metrics`` too; the kept probabilities are not read again.)
    """

    def probabilities(ds: Any) -> np.ndarray:
        out = trainer.predict(ds, metric_key_prefix="final")
        return sigmoid(out.predictions)

    val_data, test_data = splits["validation"], splits.get("test")
    best_step = checkpoint_step(trainer.state.best_model_checkpoint)
    val_probs = validation if validation is not None else evaluations.of_step(best_step)
    if validation is not None:
        log("Validation probabilities of the checkpoint average reused from its evaluation.")
    elif val_probs is not None and val_probs.shape[0] == len(val_data):
        log(f"Validation probabilities of the best checkpoint (step {best_step}) reused from its evaluation.")
    else:
        val_probs = probabilities(datasets["validation"])
    test_probs = probabilities(datasets["test"]) if "test" in datasets else None
    for name, probs, split in (("validation", val_probs, val_data), ("test", test_probs, test_data)):
        if probs is not None and split is not None and probs.shape[0] != len(split):
            raise MlbError(
                f"{name}: predictions for {probs.shape[0]} rows, expected {len(split)} "
                f"(gathered from {processes} processes)"
            )
    return val_probs, test_probs


# --------------------------------------------------------------------------- the record


def training_summary(
    opts: TrainOptions,
    splits: Dict[str, LabelledData],
    state: Any,
    train_output: Any,
    train_seconds: float,
    *,
    metric: str,
    device: Dict[str, Any],
    processes: int,
    missing: List[str],
) -> Dict[str, Any]:
    """``metrics.json``'s ``training`` block: rows, time, steps, the best checkpoint, device, label counts."""
    train_data, val_data, test_data = splits["train"], splits["validation"], splits.get("test")
    best = state.best_model_checkpoint
    return {
        "train_rows": len(train_data),
        "validation_rows": len(val_data),
        "test_rows": len(test_data) if test_data is not None else 0,
        "train_seconds": round(train_seconds, 1),
        "global_step": state.global_step,
        "epochs_run": round(float(state.epoch or 0.0), 3),
        "best_checkpoint": os.path.relpath(best, opts.output) if best else None,
        "metric_for_best": metric,
        "best_metric": state.best_metric,
        "device": device["device_name"],
        "processes": processes,
        "precision": "bf16" if device["bf16"] else "fp16" if device["fp16"] else "fp32",
        "train_loss": getattr(train_output, "training_loss", None),
        "labels_without_train_positives": missing,
        "train_label_counts": {n: int(c) for n, c in zip(train_data.label_names, train_data.labels.sum(axis=0))},
    }
