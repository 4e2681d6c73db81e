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
``add_per_label_section`` is the part that ``mlb-eval --report DIR`` reuses.

The parts: ``report_document`` (Markdown and HTML from one block list), ``report_plots``
(the PNGs, ``plots.json`` and the per-label numbers they draw), ``report_metrics`` (the
metric sets of ``metrics.json``). ``mlb-eval``'s report imports its pieces from here.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mlbert.trainer.report.document import REPORT_MD, Document
from mlbert.trainer.report.metric_sets import metric_sets, metrics_rows, set_title
from mlbert.trainer.report.plots import (
    PLOTS_DIR,
    Plot,
    cooccurrence_matrix,
    label_scores,
    plot_cooccurrence,
    plot_f1_bars,
    plot_f1_curves,
    plot_history,
    write_plots_index,
)

# What mlb-eval's report (trainer.evaluate) imports from this module.
__all__ = [
    "Document",
    "add_per_label_section",
    "cooccurrence_matrix",
    "metrics_rows",
    "write_plots_index",
    "write_training_report",
]

COOCCURRENCE_TITLE = "Label co-occurrence in the training data"


# --------------------------------------------------------------------------- the shared per-label section


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


# --------------------------------------------------------------------------- training report


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
    notes: List[str] = []
    plots: List[Plot] = []
    doc = Document("Training report")
    config, metrics, history, arrays = _read_training_output(output_dir, notes)
    if config is not None:
        _add_run_facts(doc, config)
    _add_summary(doc, metrics, notes)
    _add_training_curves(doc, output_dir, history, notes, plots)
    label_names = list(config.label_names) if config is not None else None
    thresholds = list(config.thresholds) if config is not None else None
    _add_per_label_results(doc, output_dir, label_names, thresholds, arrays, notes, plots)
    counts = arrays.get("train_label_counts")
    if counts is not None and label_names is not None and counts.shape == (len(label_names),):
        doc.heading("Training label counts")
        doc.table(["label", "training examples"], [[n, int(c)] for n, c in zip(label_names, counts)])
    if config is not None:
        _add_model_card(doc, output_dir, notes)
    if notes:
        doc.heading("Not in this report")
        doc.bullets(notes)
    if plots:
        write_plots_index(output_dir, plots)
    return doc.write(output_dir)


def _read_training_output(output_dir: str, notes: List[str]) -> Tuple[Any, Any, Any, Dict[str, np.ndarray]]:
    """(``mlb.json`` as ``CheckpointConfig``, metrics, history, prediction arrays); what fails is noted, not raised."""
    from mlbert.modelfile import CheckpointConfig

    config = None
    try:
        config = CheckpointConfig.load(output_dir)
    except Exception as exc:
        notes.append(f"`mlb.json` could not be used ({exc})")
    metrics = _read_json(os.path.join(output_dir, "metrics.json"), notes)
    history = _read_json(os.path.join(output_dir, "history.json"), notes)
    arrays = _read_npz(os.path.join(output_dir, "eval_predictions.npz"), notes)
    return config, metrics, history, arrays


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


def _add_run_facts(doc: Document, config: Any) -> None:
    """Labels, threshold objective, length, preprocessing and the command that trained the model."""
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


def _add_summary(doc: Document, metrics: Any, notes: List[str]) -> None:
    """Every metric set of ``metrics.json`` side by side, then one split's metrics for each objective."""
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


def _add_training_curves(doc: Document, output_dir: str, history: Any, notes: List[str], plots: List[Plot]) -> None:
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


def _add_per_label_results(
    doc: Document,
    output_dir: str,
    label_names: Optional[List[str]],
    thresholds: Optional[List[float]],
    arrays: Dict[str, np.ndarray],
    notes: List[str],
    plots: List[Plot],
) -> None:
    """A per-label section for validation and test; the training co-occurrence heatmap with the first."""
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
                cooccurrence=None if done_cooc else cooc, cooccurrence_title=COOCCURRENCE_TITLE,
                prefix=f"{split}_", heading=f"Per-label results on the {split} set", plots=plots,
            )
            done_cooc = done_cooc or cooc is not None
        except Exception as exc:
            notes.append(f"the {split} per-label section failed ({type(exc).__name__}: {exc})")
    if cooc is not None and not done_cooc:
        try:
            plot = plot_cooccurrence(label_names, cooc, os.path.join(output_dir, PLOTS_DIR), title=COOCCURRENCE_TITLE)
            plots.append(plot)
            doc.heading("Training data")
            doc.image(os.path.join(PLOTS_DIR, plot.file), plot.title)
        except Exception as exc:
            notes.append(f"the co-occurrence heatmap failed ({type(exc).__name__}: {exc})")


def _add_model_card(doc: Document, output_dir: str, notes: List[str]) -> None:
    try:
        from mlbert.trainer.report.model_card import write_model_card

        card = write_model_card(output_dir)
        doc.paragraph(f"Model card: `{os.path.basename(card)}`.")
    except Exception as exc:
        notes.append(f"the model card could not be written ({type(exc).__name__}: {exc})")
