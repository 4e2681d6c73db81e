"""transformers' Trainer as mlb-train runs it: the multi-label loss, its arguments, schedule and devices.

What differs from a plain ``Trainer``: the multi-label loss of ``losses`` (BCE-with-logits
with an optional per-label ``pos_weight``, or the asymmetric loss, plus SpanEmo's label-correlation
term); optional layer-wise learning rates (``layer_lr``) and weight averaging (``weight_average``); evaluation and prediction in file order (length grouping is for training
batches only); the best checkpoint picked by Jaccard/F1 at thresholds tuned for them;
validation probabilities of recent evaluations kept so the best one need not be
predicted again; one log line per Trainer log when stderr is not a terminal.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from mlbert.errors import UsageError

from mlbert.trainer import checkpoint_soup, head_dropout
from mlbert.trainer.head_dropout import mean_sample_loss
from mlbert.trainer.layer_lr import layerwise_parameter_groups
from mlbert.trainer.losses import LossSettings, multilabel_loss
from mlbert.trainer.metrics import SUMMARY_KEYS, multilabel_metrics
from mlbert.trainer.outputs import CHECKPOINTS_DIR, checkpoint_step
from mlbert.trainer.thresholds import tune_thresholds
from mlbert.trainer.train_options import TrainOptions
from mlbert.trainer.weight_average import WeightAverage

# Cap for pos_weight so that a label with 3 positives in 40k rows does not dominate the loss.
MAX_POS_WEIGHT = 100.0

# Threshold metrics pick the best checkpoint at thresholds tuned on validation for them, so a
# checkpoint whose probabilities all sit below 0.5 early in training (Jaccard 0 at 0.5) is
# not judged worthless, and checkpoints are compared the way their thresholds will be set.
TUNED_FOR_BEST = {
    "samples_jaccard": "tuned_samples_jaccard",
    "micro_f1": "tuned_micro_f1",
    "macro_f1": "tuned_macro_f1",
}


def pos_weights(labels: np.ndarray, mode: str) -> Optional[np.ndarray]:
    """BCE ``pos_weight`` per label: negatives/positives (``balanced``) or its square root (``sqrt``)."""
    if mode == "none":
        return None
    positives = labels.sum(axis=0)
    negatives = labels.shape[0] - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    ratio = np.clip(ratio, 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT)
    if mode == "sqrt":
        ratio = np.sqrt(ratio)
    return ratio.astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def best_checkpoint_metric(metric_for_best: str) -> str:
    """The Trainer metric that picks the best checkpoint for ``--metric-for-best``."""
    return TUNED_FOR_BEST.get(metric_for_best, metric_for_best)


def tuned_metrics(labels: np.ndarray, probs: np.ndarray) -> Dict[str, float]:
    """Jaccard / micro-F1 at their best global threshold, macro-F1 at per-label F1 thresholds."""
    out = {}
    for key, objective in (("samples_jaccard", "jaccard"), ("micro_f1", "micro-f1"), ("macro_f1", "label-f1")):
        t = tune_thresholds(labels, probs, objective)
        out[f"tuned_{key}"] = float(multilabel_metrics(labels, probs, t)[key])
    return out


class EvaluationProbabilities:
    """The Trainer's ``compute_metrics``, keeping the validation probabilities of recent evaluations.

    Thresholds are tuned on the best checkpoint's validation probabilities, which its
    evaluation already computed: reusing them saves predicting the validation split once
    more at the end (half a minute for GoEmotions on 2 cores). Only the best and the
    latest are kept. ``trainer`` is set once the Trainer exists (it reads its state).
    """

    def __init__(self) -> None:
        self.by_step: Dict[int, np.ndarray] = {}
        self.trainer: Any = None

    def compute_metrics(self, eval_pred: Any) -> Dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        probs = sigmoid(logits)
        step = self.trainer.state.global_step
        keep = {step, checkpoint_step(self.trainer.state.best_model_checkpoint)}
        for old_step in [s for s in self.by_step if s not in keep]:
            del self.by_step[old_step]
        self.by_step[step] = probs
        m = multilabel_metrics(labels, probs, 0.5)
        # Trainer logs floats only; ROC-AUC is None when undefined (one class present).
        out = {k: float(m[k]) for k in SUMMARY_KEYS if m[k] is not None}
        out.update(tuned_metrics(labels, probs))
        return out

    def of_step(self, step: Optional[int]) -> Optional[np.ndarray]:
        """The kept probabilities of the evaluation at ``step``, if still kept."""
        return self.by_step.get(step) if step is not None else None


class AveragedWeightsAndFileOrder:
    """The parts of mlb-train's Trainer that need no torch at import: weight averaging and eval order.

    Mixed in before ``transformers.Trainer`` by ``multilabel_trainer_class``: ``weight_average``
    (a ``WeightAverage``) is swapped in for every evaluation and checkpoint, and evaluation and
    prediction read rows in file order.
    """

    weight_average: Optional[WeightAverage] = None
    resume_checkpoint: Optional[str] = None

    def train(self, resume_from_checkpoint=None, **kwargs):
        self.resume_checkpoint = resume_from_checkpoint  # read by the averaging callback at train begin
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def evaluate(self, *args, **kwargs):
        average = self.weight_average
        if average is None or not average.active:
            return super().evaluate(*args, **kwargs)
        with average.swapped_in(self.model):
            return super().evaluate(*args, **kwargs)

    def save_model(self, output_dir=None, _internal_call=False):
        average = self.weight_average
        if average is None or not average.active:
            return super().save_model(output_dir, _internal_call)
        with average.swapped_in(self.model):
            super().save_model(output_dir, _internal_call)
        if output_dir and self.args.should_save:
            average.save_training_weights(self.model, output_dir)

    def _get_eval_sampler(self, eval_dataset):
        # With group_by_length=True, transformers 4.57 also draws *evaluation* batches
        # with a randomised LengthGroupedSampler, so trainer.predict() returns rows in
        # a shuffled order. Metrics computed inside evaluate() pair each prediction with
        # its own label and look fine, but predictions compared with the split's labels
        # (thresholds, metrics.json, eval_predictions.npz) would be misaligned. Length
        # grouping is for training batches only: evaluate and predict in file order.
        import torch

        if eval_dataset is None:
            return None
        return torch.utils.data.SequentialSampler(eval_dataset)


def multilabel_trainer_class():
    """A Trainer with mlb-train's loss, optional layer-wise rates and optional weight averaging.

    ``loss_settings`` and ``pos_weight`` choose the loss (``losses.multilabel_loss``);
    ``layer_lr_decay`` below 1 builds the optimizer from ``layer_lr.layerwise_parameter_groups``;
    the rest comes from ``AveragedWeightsAndFileOrder``. Defined in a function so that torch and
    transformers are imported only when training starts.
    """
    import torch
    from transformers import Trainer

    class MultiLabelTrainer(AveragedWeightsAndFileOrder, Trainer):
        pos_weight: Optional["torch.Tensor"] = None
        loss_settings: LossSettings = LossSettings()
        layer_lr_decay: float = 1.0

        dropout_samples: int = 1

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            weight = None
            if self.pos_weight is not None:
                weight = self.pos_weight.to(device=logits.device, dtype=torch.float32)

            def loss_of(part, target):
                return multilabel_loss(part, target, self.loss_settings, pos_weight=weight)

            # Multi-sample dropout (training only) scores K copies of the batch: the mean of their losses.
            loss = mean_sample_loss(logits, labels, self.dropout_samples, loss_of)
            return (loss, outputs) if return_outputs else loss

        def create_optimizer(self):
            if self.optimizer is not None or self.layer_lr_decay >= 1.0:
                return super().create_optimizer()
            groups = layerwise_parameter_groups(
                self.model, self.args.learning_rate, self.layer_lr_decay, self.args.weight_decay,
                set(self.get_decay_parameter_names(self.model)),
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            self.optimizer = optimizer_cls([{k: v for k, v in g.items() if k != "names"} for g in groups],
                                           **optimizer_kwargs)
            return self.optimizer

    MultiLabelTrainer.model_accepts_loss_kwargs = False
    return MultiLabelTrainer


def weight_average_callback(trainer: Any):
    """Keeps ``trainer.weight_average`` going: started (or resumed) at train begin, updated after
    every optimizer step; at the end the model holds averaged weights (the best checkpoint's, or
    the final average when no checkpoint was kept) and the average stops."""
    from transformers import TrainerCallback

    class AverageWeights(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            average = trainer.weight_average
            if trainer.resume_checkpoint:
                average.resume(trainer.model, trainer.resume_checkpoint)
            else:
                average.start(trainer.model)

        def on_step_end(self, args, state, control, **kwargs):
            trainer.weight_average.update(trainer.model, state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            average = trainer.weight_average
            if state.best_model_checkpoint is None:  # nothing loaded back: keep the final average
                average.swap(trainer.model)
            average.stop()

    return AverageWeights()


def log_lines_callback(log: Callable[[str], None]):
    """One short line per Trainer log (on stderr through ``log``) when there is no progress bar."""
    from transformers import TrainerCallback

    class LogLines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            shown = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not k.endswith(("_per_second", "runtime"))}
            text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
            log(f"step {state.global_step}/{state.max_steps}: {text}")

    return LogLines()


def world_size() -> int:
    """Processes in this training (torchrun / accelerate launch set WORLD_SIZE; 1 otherwise)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """Global rank 0 (or not distributed): the one process that checks, writes and tunes.

    Read from the launcher's environment (RANK), so it is known before the Trainer sets up
    torch.distributed; ``Trainer.is_world_process_zero()`` agrees with it afterwards.
    """
    return os.environ.get("RANK", "0").strip() in ("", "0")


def eval_schedule(n_train: int, opts: TrainOptions, processes: int = 1) -> Dict[str, int]:
    """Evaluate (and save) once an epoch, and always at the last step.

    Under torchrun each optimizer step consumes ``batch_size`` rows per process, so an
    epoch has ``processes`` times fewer steps.
    """
    steps_per_epoch = max(1, math.ceil(n_train / (opts.batch_size * max(1, processes))))
    if opts.max_steps:
        total = opts.max_steps
    else:
        total = max(1, math.ceil(steps_per_epoch * opts.epochs))
    if opts.eval_steps:
        every = opts.eval_steps
    else:
        n_evals = max(1, math.ceil(total / steps_per_epoch))
        every = max(1, math.ceil(total / n_evals))
    return {"steps_per_epoch": steps_per_epoch, "total_steps": total, "eval_steps": every}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def device_settings(device: str) -> Dict[str, Any]:
    """``--device`` as Trainer settings: CPU or CUDA, bf16 where the GPU supports it, else fp16."""
    import torch

    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise UsageError("--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False)")
    use_cuda = cuda and device != "cpu"
    settings: Dict[str, Any] = {"use_cpu": not use_cuda, "bf16": False, "fp16": False}
    if use_cuda:
        if torch.cuda.is_bf16_supported():
            settings["bf16"] = True
        else:
            settings["fp16"] = True
    settings["device_name"] = (torch.cuda.get_device_name(0) if use_cuda
                               else f"cpu ({_count(torch.get_num_threads(), 'thread')}, {_count(os.cpu_count() or 1, 'core')})")
    return settings


def tokenized_dataset(tokenizer: Any, texts: Sequence[str], labels: np.ndarray, max_length: int,
                      label_segment: Optional[str] = None) -> List[Dict[str, Any]]:
    """One feature dict per row: token ids without padding (the collator pads each batch) and float labels.

    A plain list serves the Trainer as well as a ``datasets.Dataset`` did (its length
    grouping reads each row's ``input_ids``; the same rows in the same order give the same
    batches), and training on files then needs no ``datasets``: only hub datasets do.
    With ``label_segment`` (``--label-input``) each row is the pair (label names, text).
    """
    if label_segment:
        from mlbert.trainer.label_input import encode_pairs

        enc = encode_pairs(tokenizer, texts, label_segment, max_length)
    else:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    names = list(enc.keys())
    columns = [enc[name] for name in names]
    rows = labels.astype(np.float32).tolist()
    return [dict(zip(names, values), labels=row) for *values, row in zip(*columns, rows)]


def training_arguments(opts: TrainOptions, schedule: Dict[str, int], device: Dict[str, Any], metric: str):
    """``TrainingArguments``: evaluate and save on ``schedule``, keep the best by ``metric``, group by length."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=os.path.join(opts.output, CHECKPOINTS_DIR),
        eval_strategy="steps",
        eval_steps=schedule["eval_steps"],
        save_strategy="steps",
        save_steps=schedule["eval_steps"],
        # --average-checkpoints K keeps the best K itself (checkpoint_soup.keep_best_callback).
        save_total_limit=None if opts.average_checkpoints > 1 else 2,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=metric != "loss",
        learning_rate=opts.lr,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size * 2,
        num_train_epochs=opts.epochs,
        max_steps=opts.max_steps or -1,
        warmup_ratio=opts.warmup_ratio,
        weight_decay=opts.weight_decay,
        group_by_length=True,
        seed=opts.seed,
        data_seed=opts.seed,
        use_cpu=device["use_cpu"],
        bf16=device["bf16"],
        fp16=device["fp16"],
        logging_steps=max(1, min(50, schedule["eval_steps"])),
        report_to=[],
        save_safetensors=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every parameter takes part (torchrun); skips a graph walk per step
        disable_tqdm=not sys.stderr.isatty(),
    )


def build_trainer(
    args: Any,
    model: Any,
    tokenizer: Any,
    datasets: Dict[str, Any],
    evaluations: EvaluationProbabilities,
    *,
    early_stopping_patience: int,
    weights: Optional[np.ndarray],
    log: Callable[[str], None],
    loss: LossSettings = LossSettings(),
    layer_lr_decay: float = 1.0,
    ema_decay: float = 0.0,
    head_dropout_samples: int = 1,
    average_checkpoints: int = 1,
):
    """The ``MultiLabelTrainer`` on the tokenised train and validation splits, with its callbacks.

    ``loss``, ``layer_lr_decay``, ``ema_decay`` (0: no averaging), ``head_dropout_samples``
    and ``average_checkpoints`` are the recipe options of ``TrainOptions`` of the same names.
    """
    head_dropout.install(model, head_dropout_samples)
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback

    callbacks = []
    if early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=early_stopping_patience))
    trainer = multilabel_trainer_class()(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=evaluations.compute_metrics,
        callbacks=callbacks,
    )
    evaluations.trainer = trainer
    if args.disable_tqdm:  # PrinterCallback would print dicts on stdout, which is for the results table
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(log_lines_callback(log))
    if weights is not None:
        trainer.pos_weight = torch.tensor(weights)
    trainer.loss_settings = loss
    trainer.layer_lr_decay = layer_lr_decay
    trainer.dropout_samples = head_dropout_samples
    if average_checkpoints > 1:
        trainer.add_callback(checkpoint_soup.keep_best_callback(
            average_checkpoints, args.metric_for_best_model, args.greater_is_better))
    if ema_decay > 0:
        trainer.weight_average = WeightAverage(ema_decay)
        trainer.add_callback(weight_average_callback(trainer))
    return trainer
