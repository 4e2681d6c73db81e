"""The report's plots, and the per-label numbers they draw.

Every plot is also described in ``plots.json`` (file, pixel size, labels plotted, number of
axes and bars) so that tests and tools can check what was drawn without reading pixels.
matplotlib is imported inside functions (Agg canvas, no pyplot state) to keep imports cheap.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from mlbert.decisions import THRESHOLD_GRID
from mlbert.trainer.metrics import f1_scores, predict
from mlbert.trainer.report.document import atomic_write
from mlbert.trainer.report.metric_sets import MAIN_METRICS
from mlbert.trainer.thresholds import label_f1_curves

PLOTS_DIR = "report_plots"
PLOTS_INDEX = "plots.json"


@dataclass
class Plot:
    """What one PNG shows; saved in ``plots.json`` beside the report."""

    file: str  # relative to the report folder
    kind: str
    title: str
    labels: List[str]
    width: int
    height: int
    n_axes: int  # visible axes (one per label for small multiples)
    n_bars: int = 0  # bars drawn (grouped bar charts)


def write_plots_index(report_dir: str, plots: Sequence[Plot]) -> str:
    """``report_plots/plots.json``: what each PNG shows, for tests and tools that do not read pixels."""
    path = os.path.join(report_dir, PLOTS_DIR, PLOTS_INDEX)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, json.dumps([asdict(p) for p in plots], indent=2) + "\n")
    return path


# --------------------------------------------------------------------------- numbers


def label_scores(y_true: np.ndarray, probabilities: np.ndarray, thresholds: Any) -> Dict[str, np.ndarray]:
    """Per-label precision, recall, F1 and support at ``thresholds`` (the metrics' own definitions:
    an undefined value counts as 0, so a silent label shows as a zero bar)."""
    y = (np.asarray(y_true) > 0.5).astype(np.int8)
    scores = f1_scores(y, predict(probabilities, thresholds))
    return {"precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
            "support": scores["support"].astype(np.int64)}


def f1_threshold_curves(y_true: np.ndarray, probabilities: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """F1 of every label at every threshold of ``grid``: shape (labels, len(grid))."""
    return label_f1_curves(y_true, probabilities, grid).T


def cooccurrence_matrix(y_true: np.ndarray) -> np.ndarray:
    """How often each pair of labels is set on the same example; the diagonal is each label's count."""
    y = (np.asarray(y_true) > 0.5).astype(np.int64)
    return y.T @ y


# --------------------------------------------------------------------------- plots


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    # A plain Figure (no pyplot) renders with the Agg canvas on savefig and keeps no global state.
    return Figure(figsize=(width_in, height_in), dpi=100)


def _save(fig, folder: str, name: str, kind: str, title: str, labels: Sequence[str], n_bars: int = 0) -> Plot:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    fig.savefig(path, format="png")
    width, height = (int(round(v)) for v in fig.get_size_inches() * fig.dpi)
    n_axes = sum(1 for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>")
    return Plot(file=name, kind=kind, title=title, labels=list(labels), width=width, height=height,
                n_axes=n_axes, n_bars=n_bars)


def plot_history(history: Sequence[Mapping[str, Any]], folder: str, name: str = "history.png") -> Optional[Plot]:
    """Training and validation loss, and the main validation metrics, per epoch.

    ``history`` is the Hugging Face Trainer ``log_history``: training entries carry ``loss``,
    evaluation entries ``eval_loss`` and ``eval_<metric>``, all with ``epoch``. Returns None
    when there is nothing to plot.
    """
    train = [(e["epoch"], e["loss"]) for e in history if _num(e.get("loss")) and _num(e.get("epoch"))]
    evals = [e for e in history if _num(e.get("eval_loss")) and _num(e.get("epoch"))]
    metric_keys = [k for k, _ in MAIN_METRICS if any(_num(e.get("eval_" + k)) for e in history)]
    if not train and not evals and not metric_keys:
        return None
    fig = _figure(11, 4)
    ax_loss, ax_metric = fig.subplots(1, 2)
    if train:
        ax_loss.plot(*zip(*train), label="training loss", color="tab:blue", alpha=0.8)
    if evals:
        ax_loss.plot([e["epoch"] for e in evals], [e["eval_loss"] for e in evals], "o-", label="validation loss",
                     color="tab:orange")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    names = dict(MAIN_METRICS)
    for key in metric_keys:
        points = [(e["epoch"], e["eval_" + key]) for e in history if _num(e.get("eval_" + key)) and _num(e.get("epoch"))]
        ax_metric.plot(*zip(*points), "o-", label=names[key])
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title("Validation metrics (threshold 0.5)")
    if metric_keys:
        ax_metric.legend()
    else:
        ax_metric.text(0.5, 0.5, "no validation metrics logged", ha="center", va="center", transform=ax_metric.transAxes)
    ax_metric.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, folder, name, "history", "Loss and validation metrics per epoch", metric_keys)


def plot_f1_bars(label_names: Sequence[str], f1_default: np.ndarray, f1_model: np.ndarray, support: np.ndarray,
                 folder: str, name: str = "f1_per_label.png") -> Plot:
    """Grouped horizontal bars per label: F1 at 0.5 and at the model's thresholds, support in the tick label."""
    n = len(label_names)
    order = np.argsort(-np.asarray(support), kind="stable")  # most frequent label on top
    fig = _figure(9, max(2.8, 0.32 * n + 1.6))
    ax = fig.subplots()
    ypos = np.arange(n)
    h = 0.4
    bars_a = ax.barh(ypos - h / 2, np.asarray(f1_default)[order], height=h, label="threshold 0.5", color="tab:gray")
    bars_b = ax.barh(ypos + h / 2, np.asarray(f1_model)[order], height=h, label="model thresholds", color="tab:blue")
    ax.set_yticks(ypos)
    ax.set_yticklabels([f"{label_names[i]} (n={int(support[i])})" for i in order])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title("Per-label F1 at 0.5 and at the model's thresholds (n = support)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18 if n < 8 else -0.06), ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, folder, name, "f1_per_label", "Per-label F1", [label_names[i] for i in order],
                 n_bars=len(bars_a) + len(bars_b))


def plot_f1_curves(label_names: Sequence[str], y_true: np.ndarray, probabilities: np.ndarray, thresholds: Sequence[float],
                   folder: str, name: str = "f1_vs_threshold.png") -> Plot:
    """Small multiples: F1 against threshold per label, the model's threshold marked with a dot."""
    n = len(label_names)
    curves = f1_threshold_curves(y_true, probabilities)
    chosen = label_scores(y_true, probabilities, thresholds)["f1"]
    cols = min(6, n)
    rows = int(math.ceil(n / cols))
    fig = _figure(2.2 * cols, 1.9 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    for j, ax in enumerate(axes):
        if j >= n:
            ax.set_visible(False)
            continue
        ax.plot(THRESHOLD_GRID, curves[j], color="tab:blue", lw=1.2)
        ax.axvline(0.5, color="tab:gray", lw=0.6, ls=":")
        ax.plot([thresholds[j]], [chosen[j]], "o", color="tab:red", ms=5)
        ax.set_title(f"{label_names[j]} ({thresholds[j]:.2f})", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("F1 against threshold per label (red dot: model threshold; dotted: 0.5)", fontsize=10)
    fig.tight_layout()
    return _save(fig, folder, name, "f1_vs_threshold", "F1 against threshold", list(label_names))


def plot_cooccurrence(label_names: Sequence[str], counts: np.ndarray, folder: str, name: str = "cooccurrence.png",
                      title: str = "Label co-occurrence") -> Plot:
    """Heatmap of how often label pairs occur together (log colour scale; diagonal = label count)."""
    from matplotlib.colors import LogNorm

    n = len(label_names)
    c = np.asarray(counts, dtype=np.float64)
    size = max(4.0, 0.3 * n + 2.5)
    fig = _figure(size + 1.0, size)
    ax = fig.subplots()
    masked = np.ma.masked_less_equal(c, 0)
    vmax = max(1.0, float(c.max()) if c.size else 1.0)
    image = ax.imshow(masked, cmap="viridis", norm=LogNorm(vmin=1, vmax=vmax), interpolation="nearest")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(label_names, rotation=90, fontsize=7)
    ax.set_yticklabels(label_names, fontsize=7)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(c[i, j])), ha="center", va="center", fontsize=6,
                        color="white" if c[i, j] < vmax ** 0.5 else "black")
    ax.set_title(title + "\n(examples with both labels; diagonal: examples with the label)", fontsize=9)
    cbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    cbar.ax.set_label("<colorbar>")
    fig.tight_layout()
    return _save(fig, folder, name, "cooccurrence", title, list(label_names))
