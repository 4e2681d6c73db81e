"""Multi-label metrics, each computed the way its definition says.

Threshold metrics (Jaccard, F1, exact match, per-label precision/recall) use 0/1
predictions at the given thresholds; ROC-AUC uses the probabilities themselves (the
recipe we started from computed it on thresholded 0/1 predictions, which measures a single
point of the ROC curve, not its area).

Conventions, chosen so that no number silently changes meaning:

* ``samples_jaccard`` (SemEval-2018 E-c's official "accuracy"): mean over rows of
  ``|true ∩ predicted| / |true ∪ predicted|``; a row with no true and no predicted label
  scores 1 (the prediction "none" was exactly right).
* F1 / precision / recall with a zero denominator are 0 (scikit-learn's
  ``zero_division=0``); macro averages run over every label.
* ROC-AUC is undefined for a label whose true values are all 0 or all 1; such labels are
  left out of the macro average and listed under ``roc_auc_undefined_labels``; the
  value is ``None`` when no label has both classes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mlbert.decisions import Thresholds, decide, threshold_vector



def _as_arrays(y_true: Any, probabilities: Any) -> "tuple[np.ndarray, np.ndarray]":
    y = np.asarray(y_true, dtype=np.float32)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"y_true {y.shape} and probabilities {p.shape} must both be (rows, labels)")
    return (y > 0.5).astype(np.int8), p


def predict(probabilities: Any, thresholds: Thresholds) -> np.ndarray:
    """0/1 predictions by the runtime's decision rule (``batch.decisions.decide``)."""
    return decide(probabilities, thresholds).astype(np.int8)


def samples_jaccard(y: np.ndarray, pred: np.ndarray) -> float:
    inter = np.logical_and(y, pred).sum(axis=1)
    union = np.logical_or(y, pred).sum(axis=1)
    per_row = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(per_row.mean()) if len(per_row) else 0.0


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def f1_scores(y: np.ndarray, pred: np.ndarray) -> Dict[str, Any]:
    """Per-label and micro/macro precision, recall and F1 from 0/1 matrices."""
    tp = np.logical_and(y == 1, pred == 1).sum(axis=0)
    fp = np.logical_and(y == 0, pred == 1).sum(axis=0)
    fn = np.logical_and(y == 1, pred == 0).sum(axis=0)
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    micro_p = float(_safe_div(TP, TP + FP))
    micro_r = float(_safe_div(TP, TP + FN))
    micro_f1 = float(_safe_div(2 * TP, 2 * TP + FP + FN))
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": y.sum(axis=0),
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": micro_f1,
        "macro_precision": float(precision.mean()) if len(f1) else 0.0,
        "macro_recall": float(recall.mean()) if len(f1) else 0.0,
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
    }


def roc_auc_scores(y: np.ndarray, probabilities: np.ndarray) -> Dict[str, Any]:
    """Per-label, macro and micro ROC-AUC on probabilities; undefined labels are reported, not zeroed."""
    from sklearn.metrics import roc_auc_score

    per_label: List[Optional[float]] = []
    for j in range(y.shape[1]):
        column = y[:, j]
        if column.min() == column.max():
            per_label.append(None)
        else:
            per_label.append(float(roc_auc_score(column, probabilities[:, j])))
    defined = [v for v in per_label if v is not None]
    flat = y.ravel()
    micro = None
    if flat.size and flat.min() != flat.max():
        micro = float(roc_auc_score(flat, probabilities.ravel()))
    return {
        "per_label": per_label,
        "macro": float(np.mean(defined)) if defined else None,
        "micro": micro,
    }


def multilabel_metrics(
    y_true: Any,
    probabilities: Any,
    thresholds: Thresholds = 0.5,
    label_names: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """All metrics for one split at the given thresholds (a number or one per label).

    Returns ``samples_jaccard``, ``micro_f1``, ``macro_f1``, ``exact_match`` (subset
    accuracy: every label of the row right), ``micro_roc_auc``, ``macro_roc_auc``, the
    micro/macro precision and recall, ``rows``, ``thresholds`` and ``per_label``
    ``{name: {precision, recall, f1, support, roc_auc, threshold, predicted}}``.
    """
    y, p = _as_arrays(y_true, probabilities)
    n, n_labels = y.shape
    names = list(label_names) if label_names is not None else [str(j) for j in range(n_labels)]
    if len(names) != n_labels:
        raise ValueError(f"{len(names)} label names for {n_labels} label columns")
    t = threshold_vector(thresholds, n_labels)
    pred = predict(p, t)
    f1 = f1_scores(y, pred)
    auc = roc_auc_scores(y, p)
    per_label = {}
    for j, name in enumerate(names):
        per_label[name] = {
            "precision": float(f1["precision"][j]),
            "recall": float(f1["recall"][j]),
            "f1": float(f1["f1"][j]),
            "support": int(f1["support"][j]),
            "predicted": int(pred[:, j].sum()),
            "roc_auc": auc["per_label"][j],
            "threshold": float(t[j]),
        }
    return {
        "rows": int(n),
        "samples_jaccard": samples_jaccard(y, pred),
        "micro_f1": f1["micro_f1"],
        "macro_f1": f1["macro_f1"],
        "exact_match": float((y == pred).all(axis=1).mean()) if n else 0.0,
        "micro_precision": f1["micro_precision"],
        "micro_recall": f1["micro_recall"],
        "macro_precision": f1["macro_precision"],
        "macro_recall": f1["macro_recall"],
        "micro_roc_auc": auc["micro"],
        "macro_roc_auc": auc["macro"],
        "roc_auc_undefined_labels": [name for name, v in zip(names, auc["per_label"]) if v is None],
        "thresholds": [float(x) for x in t],
        "per_label": per_label,
    }


SUMMARY_KEYS = ("samples_jaccard", "micro_f1", "macro_f1", "exact_match", "micro_roc_auc", "macro_roc_auc")


def format_table(rows: Dict[str, Dict[str, Any]], keys: Sequence[str] = SUMMARY_KEYS) -> str:
    """A plain-text table: one line per named result (e.g. "test @ jaccard"), one column per metric."""
    width = max([len(k) for k in rows] + [10])
    header = f"{'':<{width}}  " + "  ".join(f"{k:>15}" for k in keys)
    lines = [header]
    for name, metrics in rows.items():
        cells = []
        for k in keys:
            v = metrics.get(k)
            cells.append(f"{'n/a':>15}" if v is None else f"{v:>15.4f}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
