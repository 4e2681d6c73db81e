"""Reports a person can open after training or evaluation: ``report.md``/``report.html`` with PNG plots.

Why: three numbers at the end of a training log do not say which labels the model gets
right, whether the tuned thresholds helped, or whether training converged. The report
answers those at a glance:

* loss and main metrics per epoch (training runs only, from ``history.json``);
* per-label F1 at 0.5 against the model's thresholds, with support;
* per-label F1 as a function of the threshold with the chosen point marked;
* a label co-occurrence heatmap (training data for ``mlb-train``, the evaluated data for ``mlb-eval``).

``write_training_report`` reads what ``mlb-train`` leaves in its output folder and must
never make training fail: a missing or damaged file is noted in the report and skipped.
``add_per_label_section`` is the shared part that ``mlb-eval --report DIR`` reuses.

Every plot is also described in ``plots.json`` (file, pixel size, labels plotted, number of
axes and bars) so that tests and tools can check what was drawn without reading pixels.
matplotlib is imported inside functions (Agg canvas, no pyplot state) to keep imports cheap.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "report_plots"
PLOTS_INDEX = "plots.json"

# Metrics shown in summary tables, in this order, with display names.
MAIN_METRICS: Tuple[Tuple[str, str], ...] = (
    ("samples_jaccard", "samples Jaccard"),
    ("micro_f1", "micro-F1"),
    ("macro_f1", "macro-F1"),
    ("exact_match", "exact match"),
    ("micro_roc_auc", "micro ROC-AUC"),
    ("macro_roc_auc", "macro ROC-AUC"),
)
# Thresholds on which the F1 curves are evaluated (the chosen threshold is added exactly).
THRESHOLD_GRID = np.round(np.linspace(0.01, 0.99, 99), 4)


# --------------------------------------------------------------------------- document


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


class Document:
    """A tiny block list rendered to both Markdown and HTML, so both files say the same."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: List[Tuple[str, Any]] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Iterable[str]) -> None:
        items = list(items)
        if items:
            self.blocks.append(("bullets", items))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", ([str(h) for h in headers], [[_cell(c) for c in r] for r in rows])))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("image", (path, alt)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [value, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                headers, rows = value
                out.append("| " + " | ".join(_md_escape(h) for h in headers) + " |")
                out.append("|" + "|".join("---" for _ in headers) + "|")
                out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "image":
                path, alt = value
                out += [f"![{alt}]({path.replace(os.sep, '/')})", ""]
            elif kind == "code":
                out += ["```", value, "```", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        esc = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
            "td:first-child,th:first-child{text-align:left}img{max-width:100%}pre{background:#f4f4f4;padding:.5em;"
            "overflow-x:auto}</style>",
            "</head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out.append(f"<h{level}>{esc(text)}</h{level}>")
            elif kind == "paragraph":
                out.append(f"<p>{_inline_html(value)}</p>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                headers, rows = value
                out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
                out.append("</table>")
            elif kind == "image":
                path, alt = value
                out.append(f'<p><img src="{esc(path.replace(os.sep, "/"))}" alt="{esc(alt)}"></p>')
            elif kind == "code":
                out.append(f"<pre><code>{esc(value)}</code></pre>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def write(self, folder: str, markdown_name: str = REPORT_MD, html_name: Optional[str] = REPORT_HTML) -> str:
        path = os.path.join(folder, markdown_name)
        _atomic_write(path, self.to_markdown())
        if html_name:
            _atomic_write(os.path.join(folder, html_name), self.to_html())
        return path


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format_number(float(value))
    return str(value)


def format_number(value: Optional[float], digits: int = 3) -> str:
    """Metric values for tables: ``n/a`` for missing or undefined (NaN) values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _inline_html(text: str) -> str:
    """HTML for a paragraph written in Markdown: only `code` spans are translated."""
    escaped = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- numbers


def label_scores(y_true: np.ndarray, probabilities: np.ndarray, thresholds: Any) -> Dict[str, np.ndarray]:
    """Per-label precision, recall, F1 and support when predicting ``probability >= threshold``.

    Undefined precision/recall/F1 (no predicted or no true positives at all) count as 0,
    the scikit-learn ``zero_division=0`` convention, so a silent label shows as a zero bar.
    """
    y = np.asarray(y_true) > 0.5
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (p.shape[1],))
    pred = p >= t[None, :]
    tp = (pred & y).sum(axis=0).astype(np.float64)
    fp = (pred & ~y).sum(axis=0).astype(np.float64)
    fn = (~pred & y).sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": y.sum(axis=0).astype(np.int64)}


def f1_threshold_curves(y_true: np.ndarray, probabilities: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """F1 of every label at every threshold of ``grid``: shape (labels, len(grid))."""
    y = np.asarray(y_true) > 0.5
    p = np.asarray(probabilities, dtype=np.float64)
    curves = np.zeros((p.shape[1], len(grid)))
    for j in range(p.shape[1]):
        pred = p[:, j][:, None] >= grid[None, :]  # (n, T)
        pos = y[:, j][:, None]
        tp = (pred & pos).sum(axis=0)
        fp = (pred & ~pos).sum(axis=0)
        fn = (~pred & pos).sum(axis=0)
        denom = 2 * tp + fp + fn
        curves[j] = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return curves


def cooccurrence_matrix(y_true: np.ndarray) -> np.ndarray:
    """How often each pair of labels is set on the same example; the diagonal is each label's count."""
    y = (np.asarray(y_true) > 0.5).astype(np.int64)
    return y.T @ y


# --------------------------------------------------------------------------- plots


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


# --------------------------------------------------------------------------- sections


def metrics_rows(columns: Sequence[Mapping[str, Any]]) -> List[List[Any]]:
    """Rows of the main-metrics table, one column per metrics dict (``None`` shows as n/a)."""
    rows = []
    for key, display in MAIN_METRICS:
        rows.append([display] + [_as_float(col.get(key)) for col in columns])
    return rows


def add_per_label_section(
    doc: Document,
    report_dir: str,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    label_names: Sequence[str],
    thresholds: Sequence[float],
    *,
    cooccurrence: Optional[np.ndarray] = None,
    cooccurrence_title: str = "Label co-occurrence",
    prefix: str = "",
    heading: str = "Per-label results",
    plots: Optional[List[Plot]] = None,
) -> List[Plot]:
    """The per-label part shared by training reports and ``mlb-eval --report``.

    Adds a table (support, threshold, precision/recall/F1 at the model's thresholds, F1 at
    0.5) and three plots to ``doc``; the PNGs go to ``report_dir/report_plots``. Returns the
    plots (also appended to ``plots`` when given).
    """
    y = np.asarray(y_true)
    p = np.asarray(probabilities, dtype=np.float64)
    labels = list(label_names)
    if y.shape != p.shape or y.ndim != 2 or y.shape[1] != len(labels):
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} do not match {len(labels)} label names")
    thr = [float(t) for t in thresholds]
    at_model = label_scores(y, p, thr)
    at_half = label_scores(y, p, 0.5)
    folder = os.path.join(report_dir, PLOTS_DIR)
    made: List[Plot] = []
    doc.heading(heading)
    doc.paragraph(f"{y.shape[0]} examples, {len(labels)} labels. Scores at the model's thresholds unless marked 0.5.")
    doc.table(
        ["label", "support", "threshold", "precision", "recall", "F1", "F1 at 0.5"],
        [
            [labels[j], int(at_model["support"][j]), thr[j], at_model["precision"][j], at_model["recall"][j],
             at_model["f1"][j], at_half["f1"][j]]
            for j in range(len(labels))
        ],
    )
    for make in (
        lambda: plot_f1_bars(labels, at_half["f1"], at_model["f1"], at_model["support"], folder, f"{prefix}f1_per_label.png"),
        lambda: plot_f1_curves(labels, y, p, thr, folder, f"{prefix}f1_vs_threshold.png"),
    ):
        plot = make()
        made.append(plot)
        doc.image(os.path.join(PLOTS_DIR, plot.file), plot.title)
    if cooccurrence is not None:
        plot = plot_cooccurrence(labels, cooccurrence, folder, f"{prefix}cooccurrence.png", cooccurrence_title)
        made.append(plot)
        doc.image(os.path.join(PLOTS_DIR, plot.file), plot.title)
    if plots is not None:
        plots.extend(made)
    return made


def write_plots_index(report_dir: str, plots: Sequence[Plot]) -> str:
    path = os.path.join(report_dir, PLOTS_DIR, PLOTS_INDEX)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _atomic_write(path, json.dumps([asdict(p) for p in plots], indent=2) + "\n")
    return path


# --------------------------------------------------------------------------- training report


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_float(value: Any) -> Optional[float]:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return None


def metric_sets(metrics: Any, _path: str = "", skip: Sequence[str] = ("per_label", "by_objective")) -> Dict[str, Dict[str, Any]]:
    """Find the metric dicts inside ``metrics.json``, whatever its nesting.

    A dict holding any of the main metric names is a set, named by its path
    (``test / tuned``); flat keys with a split prefix (``test_micro_f1``) are grouped by prefix.
    Keys in ``skip`` are not searched (``by_objective`` repeats ``tuned`` for every objective).
    """
    found: Dict[str, Dict[str, Any]] = {}
    if not isinstance(metrics, Mapping):
        return found
    keys = {k for k, _ in MAIN_METRICS}
    direct = {k: v for k, v in metrics.items() if k in keys}
    if direct:
        found[_path or "metrics"] = dict(metrics)
    prefixed: Dict[str, Dict[str, Any]] = {}
    for k, v in metrics.items():
        if isinstance(k, str) and not isinstance(v, Mapping):
            for key in keys:
                if k.endswith("_" + key) and len(k) > len(key) + 1:
                    prefixed.setdefault(k[: -len(key) - 1], {})[key] = v
    for prefix, values in prefixed.items():
        found[f"{_path} / {prefix}" if _path else prefix] = values
    for k, v in metrics.items():
        if isinstance(v, Mapping) and k not in skip:
            found.update(metric_sets(v, f"{_path} / {k}" if _path else str(k), skip))
    return found


def set_title(name: str) -> str:
    """``validation / at_0.5`` -> ``validation @ 0.5``; ``test / tuned`` -> ``test @ tuned``."""
    parts = [p.strip() for p in name.split("/")]
    if len(parts) >= 2:
        setting = parts[-1].replace("at_", "")
        return " / ".join(parts[:-1]) + " @ " + setting
    return name


def _read_json(path: str, notes: List[str]) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        notes.append(f"`{os.path.basename(path)}` is missing")
    except (OSError, ValueError) as exc:
        notes.append(f"`{os.path.basename(path)}` could not be read ({exc})")
    return None


def _read_npz(path: str, notes: List[str]) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except FileNotFoundError:
        notes.append(f"`{os.path.basename(path)}` is missing")
    except Exception as exc:  # a damaged archive must not fail training
        notes.append(f"`{os.path.basename(path)}` could not be read ({type(exc).__name__}: {exc})")
    return {}


def write_training_report(output_dir: str) -> str:
    """Write ``report.md`` (and the rest) for a training output folder; never raises.

    Training calls this after the model is saved, so a failure here is written down in a
    minimal ``report.md`` instead of failing the run.
    """
    try:
        return _write_training_report(output_dir)
    except Exception as exc:  # last resort: the model is saved already
        doc = Document("Training report")
        doc.paragraph(f"The report could not be written: {type(exc).__name__}: {exc}")
        try:
            return doc.write(output_dir, html_name=None)
        except OSError:
            return os.path.join(output_dir, REPORT_MD)


def _write_training_report(output_dir: str) -> str:
    """Write ``report.md``, ``report.html``, plots and the model card for a training output folder.

    Reads ``metrics.json``, ``history.json``, ``eval_predictions.npz`` and ``mlb.json``.
    Anything missing or unreadable is listed under "Not in this report" instead of raising,
    because the report is written at the end of a run whose model is already saved.
    Returns the path of ``report.md``.
    """
    from ..batch.modelfile import CheckpointConfig

    notes: List[str] = []
    plots: List[Plot] = []
    doc = Document("Training report")
    config = None
    try:
        config = CheckpointConfig.load(output_dir)
    except Exception as exc:
        notes.append(f"`mlb.json` could not be used ({exc})")
    metrics = _read_json(os.path.join(output_dir, "metrics.json"), notes)
    history = _read_json(os.path.join(output_dir, "history.json"), notes)
    arrays = _read_npz(os.path.join(output_dir, "eval_predictions.npz"), notes)

    if config is not None:
        doc.paragraph(
            f"{len(config.label_names)} labels; thresholds chosen by `{config.threshold_objective}`; "
            f"maximum length {config.max_length} tokens; preprocessing "
            + ", ".join(f"{k}={v}" for k, v in config.preprocessing.to_dict().items())
            + "."
        )
        command = config.provenance.get("command")
        if command:
            doc.paragraph("Trained with:")
            doc.code(command if isinstance(command, str) else " ".join(map(str, command)))

    doc.heading("Summary")
    sets = metric_sets(metrics) if metrics is not None else {}
    if sets:
        names = list(sets)
        doc.table(["metric"] + [set_title(n) for n in names], metrics_rows([sets[n] for n in names]))
        if isinstance(metrics, Mapping) and metrics.get("threshold_objective"):
            doc.paragraph(f"`tuned`: the thresholds saved with the model, tuned on the validation set for "
                          f"`{metrics['threshold_objective']}`.")
        for split in ("test", "validation"):
            by_objective = metrics.get(split, {}).get("by_objective") if isinstance(metrics, Mapping) else None
            if isinstance(by_objective, Mapping) and by_objective:
                doc.heading(f"Thresholds tuned for each objective ({split} set)", 3)
                objectives = [k for k, v in by_objective.items() if isinstance(v, Mapping)]
                doc.table(["metric"] + objectives, metrics_rows([by_objective[o] for o in objectives]))
                break
    elif metrics is not None:
        notes.append("`metrics.json` holds no recognised metrics")

    doc.heading("Training curves")
    if isinstance(history, list):
        try:
            plot = plot_history(history, os.path.join(output_dir, PLOTS_DIR))
            if plot is None:
                notes.append("`history.json` has no losses or metrics per epoch")
            else:
                plots.append(plot)
                doc.image(os.path.join(PLOTS_DIR, plot.file), plot.title)
        except Exception as exc:
            notes.append(f"the training curves could not be drawn ({type(exc).__name__}: {exc})")
    elif history is not None:
        notes.append("`history.json` is not a list of log entries")

    label_names = list(config.label_names) if config is not None else None
    thresholds = list(config.thresholds) if config is not None else None
    cooc = arrays.get("train_cooccurrence")
    if cooc is not None and (label_names is None or cooc.shape != (len(label_names), len(label_names))):
        notes.append("`train_cooccurrence` does not match the labels")
        cooc = None
    done_cooc = False
    for split in ("validation", "test"):
        probs = arrays.get(f"{split}_probabilities")
        labels = arrays.get(f"{split}_labels")
        if probs is None or labels is None:
            if arrays and split == "validation":
                notes.append(f"no {split} predictions in `eval_predictions.npz`")
            continue
        if label_names is None:
            notes.append(f"{split} predictions skipped: label names unknown without `mlb.json`")
            continue
        try:
            add_per_label_section(
                doc, output_dir, labels, probs, label_names, thresholds,
                cooccurrence=None if done_cooc else cooc, cooccurrence_title="Label co-occurrence in the training data",
                prefix=f"{split}_", heading=f"Per-label results on the {split} set", plots=plots,
            )
            done_cooc = done_cooc or cooc is not None
        except Exception as exc:
            notes.append(f"the {split} per-label section failed ({type(exc).__name__}: {exc})")
    if cooc is not None and not done_cooc:
        try:
            plot = plot_cooccurrence(label_names, cooc, os.path.join(output_dir, PLOTS_DIR),
                                     title="Label co-occurrence in the training data")
            plots.append(plot)
            doc.heading("Training data")
            doc.image(os.path.join(PLOTS_DIR, plot.file), plot.title)
        except Exception as exc:
            notes.append(f"the co-occurrence heatmap failed ({type(exc).__name__}: {exc})")
    counts = arrays.get("train_label_counts")
    if counts is not None and label_names is not None and counts.shape == (len(label_names),):
        doc.heading("Training label counts")
        doc.table(["label", "training examples"], [[n, int(c)] for n, c in zip(label_names, counts)])

    if config is not None:
        try:
            from .model_card import write_model_card

            card = write_model_card(output_dir)
            doc.paragraph(f"Model card: `{os.path.basename(card)}`.")
        except Exception as exc:
            notes.append(f"the model card could not be written ({type(exc).__name__}: {exc})")

    if notes:
        doc.heading("Not in this report")
        doc.bullets(notes)
    if plots:
        write_plots_index(output_dir, plots)
    return doc.write(output_dir)
