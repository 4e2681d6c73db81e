"""What the recipe studies compare: the data sets, and each variant's mlb-train flags.

Two studies share the protocol of docs/RECIPE.md. The first (``VARIANTS``: losses,
layer-wise rates, EMA) is finished; the second (``LEVERS``, issue 27) measures mean
pooling, an intermediate task, label names in the input, multi-sample dropout, checkpoint
averaging and averaging two seeds, plus the sweep of the schedule (``sweep_point``).

A variant's flags may depend on the data set (the intermediate task is the *other* shipped
set; checkpoint averaging evaluates four times an epoch) and on the mode (early stopping
is off in the screening protocol, so a variant never sets its patience there). Variants
combine with ``+`` (``mean+msd``): the flags of each, in order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Union


@dataclass(frozen=True)
class Dataset:
    """A shipped dataset and the fixed epochs of the screening protocol on it."""

    folder: str
    first_label_id: int
    screening_epochs: int
    train_rows: int

    def steps_per_epoch(self, batch_size: int = 32) -> int:
        return math.ceil(self.train_rows / batch_size)

    def data_flags(self, prefix: str = "") -> List[str]:
        """mlb-train's data options for this set (``prefix`` ``intermediate-``: as the intermediate task)."""
        flags = [f"--{prefix}train", f"{self.folder}/train.tsv.gz", f"--{prefix}validation", f"{self.folder}/dev.tsv.gz"]
        if not prefix:
            flags += ["--test", f"{self.folder}/test.tsv.gz"]
        return flags + [f"--{prefix}label-names", f"{self.folder}/emotions.txt",
                        f"--{prefix}first-label-id", str(self.first_label_id)]


DATASETS = {
    # 439 steps an epoch, 3 epochs: 1,317 steps (about half of GoEmotions' 2,714 for a third of the rows).
    "xed-en": Dataset("data/xed-en", 1, 3, 14022),
    # 1,357 steps an epoch; one epoch, what 2 shared CPU cores allow for 10 runs (docs/RECIPE.md).
    "goemotions": Dataset("data/goemotions", 0, 1, 43410),
}

# The first study's candidates: the flags each adds to mlb-train's defaults.
VARIANTS: Dict[str, List[str]] = {
    "baseline": [],
    # Ridnik et al. 2021, their defaults for multi-label: gamma- 4, gamma+ 1, clip 0.05.
    "asl": ["--loss", "asl", "--asl-gamma-neg", "4", "--asl-gamma-pos", "1", "--asl-clip", "0.05"],
    # SpanEmo (Alhuzali and Ananiadou 2021): 0.8 BCE + 0.2 label-correlation term.
    "lca": ["--lca-weight", "0.2"],
    # Layer-wise decay 0.8 around today's rate: head 2e-4, middle layer ~1e-4, embeddings 4.2e-5.
    "llrd": ["--layer-lr-decay", "0.8", "--lr", "2e-4"],
    # An EMA of the weights, evaluated and saved instead of the last step's.
    "ema": ["--ema-decay", "0.999"],
}

Flags = Union[List[str], Callable[[str, str], List[str]]]


def _intermediate(dataset: str, mode: str) -> List[str]:
    """The other shipped set first, for its screening epochs (GoEmotions 1 epoch before XED, XED 3 before GoEmotions)."""
    other = DATASETS["goemotions" if dataset == "xed-en" else "xed-en"]
    flags = other.data_flags("intermediate-") + ["--intermediate-epochs", str(other.screening_epochs)]
    if mode == "short":  # a quick look: the first stage as short as the second
        flags += ["--intermediate-limit-train", "1500", "--intermediate-max-steps", "60"]
    return flags


def _soup(dataset: str, mode: str) -> List[str]:
    """The best 3 of 4 evaluations an epoch; outside the screening, a patience of two epochs as the default has."""
    every = 15 if mode == "short" else DATASETS[dataset].steps_per_epoch() // 4  # short: 60 steps
    flags = ["--average-checkpoints", "3", "--eval-steps", str(every)]
    return flags if mode in SCREENING_MODES else flags + ["--early-stopping-patience", "8"]


# The second study's levers (issue 27). ``seed-soup`` is not a flag: see ``SEED_SOUP``.
LEVERS: Dict[str, Flags] = {
    "baseline": [],
    # all-MiniLM-L6-v2 was trained through mean pooling: read that, not a fresh pooler over [CLS].
    "mean": ["--pooling", "mean"],
    # Intermediate-task transfer: the other shipped emotion set first, a new head for the target.
    "intermediate": _intermediate,
    # SpanEmo: label names as the first segment, each label scored from its first sub-token.
    "labels-in": ["--label-input"],
    # Multi-sample dropout (Inoue 2019): 5 masks on the head.
    "msd": ["--head-dropout-samples", "5"],
    # A uniform soup of the best 3 validation checkpoints of the run (4 evaluations an epoch).
    "soup": _soup,
    # Two runs of the baseline recipe (seeds s and s + 100) averaged: mlb-train --soup.
    "seed-soup": [],
}
SEED_SOUP = "seed-soup"
SEED_SOUP_OFFSET = 100  # the second ingredient of seed s is the baseline recipe at seed s + 100
SCREENING_MODES = ("short", "full", "levers", "sweep", "timing")

# The sweep: the schedule's knobs, today's values, and each one's short name in a point's name.
SWEEP_KNOBS = {"lr": ("--lr", "1e-4"), "bs": ("--batch-size", "32"), "wu": ("--warmup-ratio", "0.1"),
               "wd": ("--weight-decay", "0.01"), "ep": ("--epochs", None), "es": ("--early-stopping-patience", None)}
SWEEP_PREFIX = "sweep"


def sweep_point(**values: str) -> str:
    """A sweep point's name, e.g. ``sweep_lr2e-4_bs16`` (knobs left out keep today's values)."""
    unknown = set(values) - set(SWEEP_KNOBS)
    if unknown:
        raise ValueError(f"unknown sweep knob(s) {sorted(unknown)}")
    return "_".join([SWEEP_PREFIX] + [f"{key}{values[key]}" for key in SWEEP_KNOBS if key in values])


def parse_sweep_point(name: str) -> Dict[str, str]:
    """``sweep_lr2e-4_bs16`` -> {"lr": "2e-4", "bs": "16"}."""
    parts = name.split("_")
    if parts[0] != SWEEP_PREFIX:
        raise ValueError(f"not a sweep point: {name!r}")
    values = {}
    for part in parts[1:]:
        match = re.fullmatch(r"([a-z]+)(.+)", part)
        if not match or match.group(1) not in SWEEP_KNOBS:
            raise ValueError(f"{name!r}: unknown sweep knob in {part!r}")
        values[match.group(1)] = match.group(2)
    return values


def known(name: str, table: Dict[str, Flags]) -> bool:
    """Whether ``name`` (a variant, a sweep point, or a ``+`` combination of them) names flags."""
    try:
        variant_flags(name, "xed-en", "full", table)
    except (KeyError, ValueError):
        return False
    return True


def variant_flags(name: str, dataset: str, mode: str, table: Dict[str, Flags] = LEVERS) -> List[str]:
    """The flags ``name`` adds to the protocol's command on ``dataset`` in ``mode``."""
    flags: List[str] = []
    for part in name.split("+"):
        if part.startswith(SWEEP_PREFIX + "_"):
            for key, value in parse_sweep_point(part).items():
                flags += [SWEEP_KNOBS[key][0], value]
            continue
        entry = table[part] if part in table else VARIANTS[part]
        flags += entry(dataset, mode) if callable(entry) else list(entry)
    return flags


def shown_flags(name: str, table: Dict[str, Flags] = LEVERS) -> str:
    """The flags as the docs list them (per data set where they differ)."""
    if name == SEED_SOUP:
        return (f"two `baseline` runs (seeds s and s + {SEED_SOUP_OFFSET}) averaged with `mlb-train --soup RUN1 "
                "--soup RUN2`")
    by_dataset = {ds: " ".join(variant_flags(name, ds, "full", table)) for ds in DATASETS}
    if len(set(by_dataset.values())) == 1:
        flags = next(iter(by_dataset.values()))
        return f"`{flags}`" if flags else "none (today's defaults)"
    return "; ".join(f"{ds}: `{flags}`" for ds, flags in by_dataset.items())
