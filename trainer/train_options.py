"""``TrainOptions``: everything one mlb-train run needs, and the combinations that cannot work.

The CLI fills it from its options; tests and scripts may build it directly. ``check`` runs
before any data is read, so a wrong option costs no loading time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from mlbert.errors import UsageError
from mlbert.preprocess import Preprocessing

from mlbert.trainer.head_loading import LABEL_TOKENS, POOLINGS, HeadSpec
from mlbert.trainer.losses import LOSSES, LossSettings
from mlbert.trainer.thresholds import OBJECTIVES

# Metrics the best checkpoint can be chosen by; all but loss are "higher is better".
BEST_METRICS = ("samples_jaccard", "micro_f1", "macro_f1", "exact_match", "macro_roc_auc", "micro_roc_auc", "loss")
POS_WEIGHTS = ("none", "balanced", "sqrt")
HEAD_BIAS_INITS = ("prior", "zero")
POOLER_MODES = ("reinit", "keep")
DEVICES = ("auto", "cpu", "cuda")


# The labelled-data fields an intermediate task has of its own (``--intermediate-*``).
INTERMEDIATE_DATA_FIELDS = ("train", "validation", "dataset", "dataset_config", "format", "header", "text_column",
                            "id_column", "layout", "labels", "label_column", "label_names_file", "label_id_base",
                            "limit_train")


@dataclass
class IntermediateData:
    """``--intermediate-*``: the data of a first fine-tuning stage and its length (``trainer/intermediate.py``).

    The data fields mean what mlb-train's options of the same names mean; ``epochs`` and
    ``max_steps`` are the first stage's (every other setting is the run's).
    """

    train: Optional[str] = None
    validation: Optional[str] = None
    dataset: Optional[str] = None
    dataset_config: Optional[str] = None
    format: Optional[str] = None
    header: Optional[bool] = None
    text_column: Optional[str] = None
    id_column: Optional[str] = None
    layout: str = "auto"
    labels: Optional[List[str]] = None
    label_column: Optional[str] = None
    label_names_file: Optional[str] = None
    label_id_base: int = 0
    limit_train: Optional[int] = None
    epochs: float = 1.0
    max_steps: Optional[int] = None

    def data_fields(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in INTERMEDIATE_DATA_FIELDS}


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
    # recipe options studied in docs/RECIPE.md (losses.py, layer_lr.py, weight_average.py)
    loss: str = "bce"
    asl_gamma_neg: float = 4.0
    asl_gamma_pos: float = 1.0
    asl_clip: float = 0.05
    lca_weight: float = 0.0
    layer_lr_decay: float = 1.0
    ema_decay: float = 0.0
    head_bias_init: str = "prior"
    pooler: str = "reinit"
    # the levers of the second recipe study (docs/RECIPE.md): head_loading.py, head_dropout.py,
    # checkpoint_soup.py, intermediate.py, run_soup.py
    pooling: str = "cls"
    label_input: bool = False
    label_token: str = "first"
    head_dropout_samples: int = 1
    average_checkpoints: int = 1
    intermediate: Optional[IntermediateData] = None
    soup: Optional[List[str]] = None  # finished runs to average instead of training
    # Facts a caller adds to mlb.json's provenance and metrics.json's training block (the
    # intermediate stage's record, the averaged runs): ``{key: value}``.
    extra_record: Dict[str, Any] = field(default_factory=dict)
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
            raise UsageError("no training data: pass --train FILE or --dataset NAME"
                             + (" (--soup reads the data its runs were trained on, to tune thresholds)"
                                if self.soup else ""))
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
            ("--loss", self.loss, LOSSES),
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
        self.check_recipe()

    def check_recipe(self) -> None:
        """The loss, layer-wise rate and averaging options: ranges and combinations."""
        if self.loss == "asl" and self.pos_weight != "none":
            raise UsageError("--pos-weight weights the BCE loss; the asymmetric loss (--loss asl) has its own focusing")
        for name, value in (("--asl-gamma-neg", self.asl_gamma_neg), ("--asl-gamma-pos", self.asl_gamma_pos)):
            if value < 0:
                raise UsageError(f"{name} must be at least 0, not {value}")
        for name, value in (("--asl-clip", self.asl_clip), ("--lca-weight", self.lca_weight), ("--ema-decay", self.ema_decay)):
            if not 0.0 <= value < 1.0:
                raise UsageError(f"{name} must be in [0, 1), not {value}")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise UsageError(f"--layer-lr-decay must be in (0, 1], not {self.layer_lr_decay}")
        self.check_levers()

    def check_levers(self) -> None:
        """Pooling, label input, multi-sample dropout, averaging and the intermediate stage."""
        for name, value, allowed in (("--pooling", self.pooling, POOLINGS), ("--label-token", self.label_token,
                                                                             LABEL_TOKENS)):
            if value not in allowed:
                raise UsageError(f"{name} {value!r}: use one of {', '.join(allowed)}")
        if self.label_input and self.pooling != "cls":
            raise UsageError("--label-input scores each label from its own tokens; it cannot be combined with --pooling")
        for name, value in (("--head-dropout-samples", self.head_dropout_samples),
                            ("--average-checkpoints", self.average_checkpoints)):
            if value < 1:
                raise UsageError(f"{name} must be at least 1, not {value}")
        if self.soup is not None:
            if len(self.soup) < 2:
                raise UsageError("--soup needs at least two runs to average")
            if self.intermediate is not None or self.resume:
                raise UsageError("--soup averages finished runs; it cannot be combined with --intermediate-* or --resume")
        if self.intermediate is not None:
            stage = self.intermediate
            if bool(stage.train) == bool(stage.dataset):
                raise UsageError("the intermediate stage needs one of --intermediate-train FILE or --intermediate-dataset NAME")
            if stage.epochs <= 0 or (stage.max_steps is not None and stage.max_steps < 1):
                raise UsageError("--intermediate-epochs must be positive and --intermediate-max-steps at least 1")

    @property
    def head(self) -> HeadSpec:
        return HeadSpec(pooling=self.pooling, label_input=self.label_input, label_token=self.label_token)

    @property
    def loss_settings(self) -> LossSettings:
        return LossSettings(loss=self.loss, asl_gamma_neg=self.asl_gamma_neg, asl_gamma_pos=self.asl_gamma_pos,
                            asl_clip=self.asl_clip, lca_weight=self.lca_weight)
