"""Score a model on labelled data: the library behind ``mlb-eval``.

Why it exists: "how good is this exported file on my labelled data?" needs the same
answer whether the model is the training checkpoint or the int8 ONNX file, so both go
through one table:

* ``.onnx`` files run through the batch runtime exactly as ``mlb-batch`` runs them
  (``batch.runtime.Predictor``; preprocessing, tokenizer and thresholds from the header);
* checkpoint folders run through transformers (preprocessing, thresholds and maximum
  length from ``mlb.json``; any multi-label Hugging Face checkpoint works with 0.5
  thresholds), with dynamic padding, length-sorted token-budget batches and no autograd.

Data labels are matched to the model's labels by name, never by position.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from mlbert.decisions import RowAgreement, row_agreement
from mlbert.errors import InputError, ModelFileError, UsageError, first_line
from mlbert.preprocess import Preprocessing

from mlbert.runtime.providers import default_token_budget
from mlbert.trainer.torch_checkpoint import checkpoint_probabilities, load_checkpoint, register_mlb_models
from mlbert.trainer.metrics import multilabel_metrics
from mlbert.trainer.report.metric_sets import MAIN_METRICS

SETTINGS = ("model", "0.5")  # thresholds the table reports: the model's own, and 0.5


@dataclass
class EvalModel:
    """A loaded model, whichever kind: names, thresholds and a raw texts -> probabilities function."""

    path: str
    kind: str  # "onnx" or "checkpoint"
    label_names: List[str]
    thresholds: List[float]
    preprocessing: Preprocessing
    max_length: int
    # Raw texts in (the model's preprocessing is applied inside), (n, labels) float32 out, input order.
    predict_proba: Callable[[List[str]], np.ndarray]
    info: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    model: EvalModel
    data_source: str
    y_true: np.ndarray  # (n, L) in the model's label order
    probabilities: np.ndarray
    metrics: Dict[str, Dict[str, Any]]  # setting ("model", "0.5") -> multilabel_metrics result


# --------------------------------------------------------------------------- loading


def load_eval_model(
    path: str, *, device: str = "auto", threads: Optional[int] = None, token_budget: Optional[int] = None
) -> EvalModel:
    """Open an ``.onnx`` file (batch runtime), a built-in model by name (``goemotions``), or a checkpoint
    folder / hub name (transformers). A folder or file of that name wins over a built-in name."""
    from mlbert.models import builtin_model

    if path.lower().endswith(".onnx") or (not os.path.exists(path) and builtin_model(path) is not None):
        return _load_onnx(path, device=device, threads=threads, token_budget=token_budget)
    if os.path.isfile(path):
        raise ModelFileError(f"{path}: not a model: pass an .onnx file written by mlb-export or a checkpoint folder")
    return _load_checkpoint(path, device=device, threads=threads, token_budget=token_budget)


def _load_onnx(path: str, *, device: str, threads: Optional[int], token_budget: Optional[int]) -> EvalModel:
    """An exported file through the Python API's ``Classifier``: exactly what mlb-batch runs."""
    from mlbert.runtime.classifier import load

    classifier = load(path, device, threads=threads, token_budget=token_budget)
    header = classifier.header
    return EvalModel(
        path=path,
        kind="onnx",
        label_names=list(classifier.label_names),
        thresholds=[float(t) for t in classifier.thresholds],
        preprocessing=header.preprocessing,
        max_length=header.max_length,
        predict_proba=classifier.predict_proba,
        info={"provider": classifier.provider, "quantization": header.quantization, "threads": classifier.threads,
              "threshold_objective": header.threshold_objective},
    )


def _checkpoint_facts(path: str):
    """Labels, thresholds, preprocessing and max length: ``mlb.json`` if present, else config.json."""
    from mlbert.modelfile import CHECKPOINT_CONFIG_FILE, CheckpointConfig

    if os.path.isdir(path) and os.path.exists(os.path.join(path, CHECKPOINT_CONFIG_FILE)):
        cfg = CheckpointConfig.load(path)
        return list(cfg.label_names), list(cfg.thresholds), cfg.preprocessing, cfg.max_length, cfg.threshold_objective
    return None


def _load_checkpoint(path: str, *, device: str, threads: Optional[int], token_budget: Optional[int]) -> EvalModel:
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
        raise ModelFileError(f"{path}: no config.json (not a Hugging Face checkpoint folder)")
    if not os.path.exists(path) and "/" not in path:
        raise ModelFileError(f"{path}: no such file or folder")
    facts = _checkpoint_facts(path)
    try:
        import torch
        from transformers import AutoConfig
    except ImportError:
        raise UsageError("scoring a checkpoint folder needs the training extra: pip install 'mlbert[train]'") from None

    register_mlb_models()
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot read the model configuration ({first_line(exc)})") from None
    problem = getattr(config, "problem_type", None)
    if problem not in (None, "multi_label_classification"):
        raise ModelFileError(f"{path}: a {problem} model, not a multi-label (sigmoid) classifier")
    if facts is None:
        id2label = getattr(config, "id2label", None) or {}
        names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(config.num_labels)]
        thresholds = [0.5] * len(names)
        preprocessing = Preprocessing()
        max_length = int(min(getattr(config, "max_position_embeddings", 512) or 512, 512))
        objective = "none"
    else:
        names, thresholds, preprocessing, max_length, objective = facts
    model, tokenizer = load_checkpoint(path, require_fast=False)
    if model.config.num_labels != len(names):
        raise ModelFileError(
            f"{path}: the model has {model.config.num_labels} outputs but mlb.json names {len(names)} labels"
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device; use --device cpu")
    torch_device = torch.device("cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if threads:
        torch.set_num_threads(int(threads))
    model.to(torch_device).eval()
    budget = token_budget or default_token_budget("cuda" if torch_device.type == "cuda" else "cpu", max_length)

    def predict_proba(texts: List[str]) -> np.ndarray:
        return checkpoint_probabilities(model, tokenizer, preprocessing.apply(list(texts)), max_length, budget,
                                        torch_device)

    return EvalModel(
        path=path,
        kind="checkpoint",
        label_names=names,
        thresholds=[float(t) for t in thresholds],
        preprocessing=preprocessing,
        max_length=max_length,
        predict_proba=predict_proba,
        info={"device": str(torch_device), "threshold_objective": objective},
    )


# --------------------------------------------------------------------------- labels and metrics


def align_labels(data_names: Sequence[str], data_labels: np.ndarray, model: EvalModel, data_source: str) -> np.ndarray:
    """The data's label matrix with its columns in the model's label order, matched by name.

    Raises ``InputError`` listing the names only in the data and only in the model.
    """
    data_names = list(data_names)
    only_data = [n for n in data_names if n not in model.label_names]
    only_model = [n for n in model.label_names if n not in data_names]
    if only_data or only_model:
        parts = []
        if only_model:
            parts.append(f"the model's labels missing from the data: {', '.join(only_model)}")
        if only_data:
            parts.append(f"labels in the data the model does not know: {', '.join(only_data)}")
        raise InputError(
            f"labels do not match {model.path} ({'; '.join(parts)}); name the label columns with --labels "
            f"or --label-names", data_source,
        )
    order = [data_names.index(n) for n in model.label_names]
    return np.asarray(data_labels)[:, order]


def evaluate_arrays(
    y_true: np.ndarray, probabilities: np.ndarray, label_names: Sequence[str], thresholds: Sequence[float]
) -> Dict[str, Dict[str, Any]]:
    """Metrics at the model's thresholds and at 0.5 (``{"model": ..., "0.5": ...}``)."""
    return {
        "model": multilabel_metrics(y_true, probabilities, list(thresholds), list(label_names)),
        "0.5": multilabel_metrics(y_true, probabilities, 0.5, list(label_names)),
    }


def evaluate_model(model: EvalModel, texts: Sequence[str], data_names: Sequence[str], data_labels: np.ndarray,
                   data_source: str) -> Evaluation:
    y = align_labels(data_names, data_labels, model, data_source)
    probabilities = model.predict_proba(list(texts))
    if probabilities.shape != y.shape:
        raise ModelFileError(
            f"{model.path}: returned probabilities of shape {probabilities.shape} for {len(texts)} texts "
            f"and {len(model.label_names)} labels"
        )
    return Evaluation(model, data_source, y, probabilities,
                      evaluate_arrays(y, probabilities, model.label_names, model.thresholds))


# --------------------------------------------------------------------------- output

# The summary metrics, in the order every table shows them.
SUMMARY = MAIN_METRICS


def _fmt(value: Any, width: int = 9, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return f"{'n/a':>{width}}"
    return f"{value:>+{width}.4f}" if signed else f"{value:>{width}.4f}"


def _delta(a: Any, b: Any) -> Optional[float]:
    if a is None or b is None:
        return None
    return float(b) - float(a)


def format_report(evaluations: Sequence[Evaluation]) -> str:
    """The plain-text metrics table: summary at the model's thresholds and at 0.5, then per label.

    With two evaluations the columns are A, B and B - A for each setting.
    """
    if not evaluations:
        return ""
    two = len(evaluations) == 2
    a = evaluations[0]
    n = a.y_true.shape[0]
    lines = [f"{a.data_source}: {n} rows, {a.y_true.shape[1]} labels"]
    for i, ev in enumerate(evaluations):
        tag = "AB"[i] + ": " if two else ""
        extra = ", ".join(f"{k} {v}" for k, v in ev.model.info.items() if k in ("provider", "device") and v)
        quant = ev.model.info.get("quantization", {}).get("mode") if ev.model.kind == "onnx" else None
        lines.append(f"{tag}{ev.model.path} ({ev.model.kind}{', ' + quant if quant and quant != 'none' else ''}"
                     f"{', ' + extra if extra else ''})")
    lines.append("")
    width = 16
    if two:
        head = f"{'':<{width}}" + "".join(f"{h:>10}" for h in ("A @thr", "B @thr", "B-A", "A @0.5", "B @0.5", "B-A"))
    else:
        head = f"{'':<{width}}" + "".join(f"{h:>10}" for h in ("@ thr", "@ 0.5"))
    lines.append(head)
    for key, name in SUMMARY:
        cells = []
        if two:
            for setting in SETTINGS:
                va = evaluations[0].metrics[setting].get(key)
                vb = evaluations[1].metrics[setting].get(key)
                cells += [_fmt(va, 10), _fmt(vb, 10), _fmt(_delta(va, vb), 10, signed=True)]
        else:
            cells = [_fmt(a.metrics[s].get(key), 10) for s in SETTINGS]
        lines.append(f"{name:<{width}}" + "".join(cells))
    lines.append("")
    if two:
        agreement = rows_agreement(evaluations[0], evaluations[1])
        lines += [f"Row agreement, B against A (each at its thresholds): {agreement.line()}", ""]

    lines += _per_label_lines(evaluations)
    return "\n".join(lines) + "\n"


def rows_agreement(a: Evaluation, b: Evaluation) -> RowAgreement:
    """Row by row, how far B's label sets and scores stay A's (issue 25): aggregate metrics can hide
    a model that moves many rows both ways. B's labels are matched to A's by name."""
    order = [b.model.label_names.index(n) for n in a.model.label_names]
    return row_agreement(a.probabilities, b.probabilities[:, order], a.model.thresholds,
                         [b.model.thresholds[i] for i in order])


def _per_label_lines(evaluations: Sequence[Evaluation]) -> List[str]:
    """The per-label table: one model's precision/recall/F1, or two models side by side with the F1 delta."""
    a = evaluations[0]
    label_width = max([len(x) for x in a.model.label_names] + [5]) + 2
    lines = []
    if len(evaluations) == 2:
        lines.append(f"{'label':<{label_width}}{'support':>8}" + "".join(
            f"{h:>9}" for h in ("A thr", "B thr", "A P", "B P", "A R", "B R", "A F1", "B F1", "F1 B-A", "A F1@.5",
                                "B F1@.5")))
        for name in a.model.label_names:
            pa = evaluations[0].metrics["model"]["per_label"][name]
            pb = evaluations[1].metrics["model"]["per_label"][name]
            ha = evaluations[0].metrics["0.5"]["per_label"][name]
            hb = evaluations[1].metrics["0.5"]["per_label"][name]
            lines.append(
                f"{name:<{label_width}}{pa['support']:>8}"
                + "".join(_fmt(v) for v in (pa["threshold"], pb["threshold"], pa["precision"], pb["precision"],
                                             pa["recall"], pb["recall"], pa["f1"], pb["f1"]))
                + _fmt(_delta(pa["f1"], pb["f1"]), signed=True) + _fmt(ha["f1"]) + _fmt(hb["f1"])
            )
        return lines
    lines.append(f"{'label':<{label_width}}{'support':>8}" + "".join(
        f"{h:>10}" for h in ("threshold", "precision", "recall", "F1", "ROC-AUC", "F1 @0.5")))
    for name in a.model.label_names:
        p = a.metrics["model"]["per_label"][name]
        h = a.metrics["0.5"]["per_label"][name]
        lines.append(f"{name:<{label_width}}{p['support']:>8}" + "".join(
            _fmt(v, 10) for v in (p["threshold"], p["precision"], p["recall"], p["f1"], p["roc_auc"], h["f1"])))
    return lines


def to_json(evaluations: Sequence[Evaluation]) -> Dict[str, Any]:
    """Everything in the table, as JSON: per model the metrics at its thresholds and at 0.5; deltas for two."""
    out: Dict[str, Any] = {
        "data": evaluations[0].data_source if evaluations else None,
        "rows": int(evaluations[0].y_true.shape[0]) if evaluations else 0,
        "label_names": list(evaluations[0].model.label_names) if evaluations else [],
        "models": [
            {
                "path": ev.model.path,
                "kind": ev.model.kind,
                "label_names": list(ev.model.label_names),
                "thresholds": list(ev.model.thresholds),
                "info": ev.model.info,
                "at_model_thresholds": ev.metrics["model"],
                "at_0.5": ev.metrics["0.5"],
            }
            for ev in evaluations
        ],
    }
    if len(evaluations) == 2:
        a, b = evaluations
        deltas: Dict[str, Any] = {}
        for setting, key in (("model", "at_model_thresholds"), ("0.5", "at_0.5")):
            ma, mb = a.metrics[setting], b.metrics[setting]
            deltas[key] = {k: _delta(ma.get(k), mb.get(k)) for k, _ in SUMMARY}
            deltas[key]["per_label_f1"] = {
                name: _delta(ma["per_label"][name]["f1"], mb["per_label"][name]["f1"]) for name in a.model.label_names
            }
        out["deltas_b_minus_a"] = deltas
        agreement = rows_agreement(a, b)
        out["row_agreement"] = {"rows": agreement.rows, "same_label_set": agreement.same_rows,
                                "share": agreement.share, "max_abs_score_diff": agreement.max_abs_diff,
                                "mean_abs_score_diff": agreement.mean_abs_diff}
    return out


def write_eval_report(report_dir: str, evaluations: Sequence[Evaluation]) -> str:
    """``report.md``/``report.html`` with the per-label parts for each model (``mlb-eval --report DIR``)."""
    from mlbert.trainer.report.training import Document, add_per_label_section, cooccurrence_matrix, metrics_rows, write_plots_index

    os.makedirs(report_dir, exist_ok=True)
    first = evaluations[0]
    doc = Document("Evaluation report")
    doc.paragraph(f"Data: `{first.data_source}`, {first.y_true.shape[0]} rows, {first.y_true.shape[1]} labels.")
    doc.heading("Summary")
    columns, headers = [], []
    for i, ev in enumerate(evaluations):
        tag = f"{'AB'[i]} " if len(evaluations) == 2 else ""
        headers += [f"{tag}model thresholds", f"{tag}0.5"]
        columns += [ev.metrics["model"], ev.metrics["0.5"]]
    doc.table(["metric"] + headers, metrics_rows(columns))
    if len(evaluations) == 2:
        doc.bullets([f"A: `{evaluations[0].model.path}`", f"B: `{evaluations[1].model.path}`"])
    plots: list = []
    for i, ev in enumerate(evaluations):
        prefix = f"{'ab'[i]}_" if len(evaluations) == 2 else ""
        add_per_label_section(
            doc, report_dir, ev.y_true, ev.probabilities, ev.model.label_names, ev.model.thresholds,
            cooccurrence=cooccurrence_matrix(ev.y_true) if i == 0 else None,
            cooccurrence_title="Label co-occurrence in the evaluated data",
            prefix=prefix, heading=f"Per-label results: {ev.model.path}", plots=plots,
        )
    write_plots_index(report_dir, plots)
    return doc.write(report_dir)
