"""Accuracy side by side: the trained checkpoint (PyTorch), its fp32 ONNX file and its int8 ONNX file.

All three are scored on GoEmotions test through ``trainer.evaluate`` (the library behind
``mlb-eval``): the ONNX files run through the batch runtime exactly as ``mlb-batch`` runs
them, the checkpoint through transformers. Metrics at 0.5 and at the thresholds
``mlb-train`` tuned on the validation split (saved in mlb.json and the ONNX header).
mlb-train's own metrics.json adds the test scores under each threshold objective.

    python benchmarks/bench_accuracy.py --checkpoint runs/goemotions \\
        --fp32 runs/goemotions-export/model-none.onnx --int8 runs/goemotions-export/model-int8.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402

KEYS = (("samples_jaccard", "samples Jaccard"), ("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"),
        ("exact_match", "exact match"))
ANCHORS = [
    ("GoEmotions paper, BERT-base (Demszky et al. 2020)", "macro-F1 0.46"),
    ("tuned BERT-base reports", "macro-F1 0.49-0.53"),
]


def run_accuracy(checkpoint: Path, fp32: Path, int8: Path, data: Path = c.DATA_DIR / "test.tsv.gz",
                 limit: Optional[int] = None) -> Dict[str, Any]:
    """Metrics for each model kind at 0.5 and at its saved thresholds, plus int8 - fp32 deltas."""
    from mlbert.trainer.data import read_labelled_file
    from mlbert.trainer.evaluate import evaluate_model, load_eval_model

    labelled = read_labelled_file(str(data), label_names=c.label_names(data.parent))
    texts, labels = labelled.texts, labelled.labels
    if limit is not None:
        texts, labels = texts[:limit], labels[:limit]
    results: Dict[str, Any] = {"rows": len(texts), "data": str(data), "models": {}}
    for kind, path in (("PyTorch checkpoint", checkpoint), ("fp32 ONNX", fp32), ("int8 ONNX", int8)):
        c.log(f"accuracy: {kind} ({path}) on {len(texts)} rows")
        model = load_eval_model(str(path), device="cpu")
        started = time.perf_counter()
        ev = evaluate_model(model, texts, labelled.label_names, labels, labelled.source)
        seconds = time.perf_counter() - started
        results["models"][kind] = {
            "path": str(path), "seconds": seconds, "threshold_objective": model.info.get("threshold_objective"),
            "metrics": {setting: {k: float(ev.metrics[setting][k]) for k, _ in KEYS} for setting in ("0.5", "model")},
        }
    metrics_json = checkpoint / "metrics.json"
    if metrics_json.exists():
        try:
            m = json.loads(metrics_json.read_text(encoding="utf-8"))
            test = m.get("test", {})
            results["by_objective"] = {name: {k: float(v[k]) for k, _ in KEYS}
                                       for name, v in (test.get("by_objective") or {}).items()}
            results["training"] = m.get("training", {})
        except (ValueError, KeyError, TypeError):
            pass
    return results


def report(results: Dict[str, Any]) -> str:
    out: List[str] = []
    out.append(f"### Accuracy on GoEmotions test ({results['rows']:,} rows)\n")
    rows = []
    for kind, r in results["models"].items():
        for setting, title in (("0.5", "0.5"), ("model", f"tuned on dev ({r['threshold_objective']})")):
            mm = r["metrics"][setting]
            rows.append([kind, title] + [f"{mm[k]:.4f}" for k, _ in KEYS])
    out.append(c.md_table(["model", "thresholds"] + [t for _, t in KEYS], rows))
    d = deltas(results)
    if d:
        out.append("\nint8 minus fp32, in points (x100): " + "; ".join(
            f"{setting}: " + ", ".join(f"{t} {v:+.2f}" for t, v in vals.items()) for setting, vals in d.items()) + ".\n")
    if results.get("by_objective"):
        out.append("Test scores of the PyTorch checkpoint under each threshold objective mlb-train tuned on dev "
                   "(from its metrics.json):\n")
        out.append(c.md_table(["thresholds tuned for"] + [t for _, t in KEYS],
                              [[name] + [f"{v[k]:.4f}" for k, _ in KEYS] for name, v in results["by_objective"].items()]))
    out.append("\nAnchors: " + "; ".join(f"{a}: {b}" for a, b in ANCHORS) + ".\n")
    return "\n".join(out)


def deltas(results: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    models = results["models"]
    if "int8 ONNX" not in models or "fp32 ONNX" not in models:
        return {}
    out = {}
    for setting in ("0.5", "model"):
        a, b = models["int8 ONNX"]["metrics"][setting], models["fp32 ONNX"]["metrics"][setting]
        out[setting] = {t: 100 * (a[k] - b[k]) for k, t in KEYS}
    return out


def targets(results: Dict[str, Any]) -> List[List[str]]:
    rows: List[List[str]] = []
    d = deltas(results)
    for setting in ("0.5", "model"):
        if setting in d:
            worst = min(d[setting]["micro-F1"], d[setting]["samples Jaccard"])
            rows.append([f"int8 within 1.0 point of fp32 on micro-F1 and Jaccard (thresholds {setting})",
                         f"micro-F1 {d[setting]['micro-F1']:+.2f}, Jaccard {d[setting]['samples Jaccard']:+.2f}",
                         "met" if worst >= -1.0 else "NOT met"])
    torch_m = results["models"].get("PyTorch checkpoint")
    if torch_m:
        best = max(torch_m["metrics"]["0.5"]["macro_f1"], torch_m["metrics"]["model"]["macro_f1"])
        extra = ""
        if results.get("by_objective"):
            by = results["by_objective"]
            name = max(by, key=lambda n: by[n]["macro_f1"])
            extra = f"; {by[name]['macro_f1']:.4f} with thresholds tuned for {name}"
            best = max(best, by[name]["macro_f1"])
        rows.append(["GoEmotions macro-F1 > 0.46 (22M-parameter default model)",
                     f"{torch_m['metrics']['0.5']['macro_f1']:.4f} at 0.5, {torch_m['metrics']['model']['macro_f1']:.4f} "
                     f"at saved thresholds{extra}", "met" if best > 0.46 else "NOT met"])
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Accuracy: PyTorch vs fp32 ONNX vs int8 ONNX on GoEmotions test.")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--int8", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="first N test rows only (smoke runs)")
    args = parser.parse_args(argv)
    results = run_accuracy(args.checkpoint, args.fp32, args.int8, limit=args.limit)
    print(report(results))
    print(c.md_table(["target", "measured", "status"], targets(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
