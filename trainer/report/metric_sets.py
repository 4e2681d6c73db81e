"""The metrics in ``metrics.json`` as reports and model cards show them.

``metrics.json`` nests its metric sets (``validation / tuned``, ``test / at_0.5``, ...);
``metric_sets`` finds them by the metric names they hold, and also reads flat keys such as
``test_micro_f1``, so the report and the model card show whatever sets a file holds.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

# Metrics shown in summary tables, in this order, with display names.
MAIN_METRICS: Tuple[Tuple[str, str], ...] = (
    ("samples_jaccard", "samples Jaccard"),
    ("micro_f1", "micro-F1"),
    ("macro_f1", "macro-F1"),
    ("exact_match", "exact match"),
    ("micro_roc_auc", "micro ROC-AUC"),
    ("macro_roc_auc", "macro ROC-AUC"),
)


def as_float(value: Any) -> Optional[float]:
    """A metric value as float; None for anything else (missing, None, bool, text)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return None


def metrics_rows(columns: Sequence[Mapping[str, Any]]) -> List[List[Any]]:
    """Rows of the main-metrics table, one column per metrics dict (``None`` shows as n/a)."""
    rows = []
    for key, display in MAIN_METRICS:
        rows.append([display] + [as_float(col.get(key)) for col in columns])
    return rows


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
