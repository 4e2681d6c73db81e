"""results.md of the GPU check: tables from results.json, and the issue's targets checked against them.

Pure formatting over the results dict (what is missing renders as "-"), so a run cut
short by its time limit still gives a readable page.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

PIPELINE_FACTOR = 4.0  # mlb-batch fp16 rows/s against the transformers fp16 pipeline's
ROWS_PER_SECOND = 20_000  # mlb-batch fp16, end to end
TRAIN_FACTOR = 20.0  # an epoch against the same machine's 2 CPUs


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def table(header: Sequence[str], rows: List[Sequence[Any]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _get(results: Dict[str, Any], *path: Any) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return round(a / b, 1) if a and b else None


def targets(results: Dict[str, Any]) -> List[Tuple[str, str, str]]:
    """(target, measured, met) rows for the issue's goals; '-' where the run did not measure it."""
    fp16 = _get(results, "batch", "fp16", "rows_per_second")
    pipes = [p["rows_per_second"] for p in (results.get("pipeline") or {}).values() if p]
    factor = _ratio(fp16, max(pipes) if pipes else None)
    accel, cpu2 = _get(results, "train_accelerator", "step_seconds"), _get(results, "train_cpu2", "step_seconds")
    speedup = _ratio(cpu2, accel)

    def met(value: Optional[float], goal: float) -> str:
        return "-" if value is None else ("yes" if value >= goal else "NO")

    return [
        (f"mlb-batch --device cuda, fp16 file: >= {PIPELINE_FACTOR:g}x the fp16 transformers pipeline (its faster batch size)",
         _fmt(factor) + ("x" if factor else ""), met(factor, PIPELINE_FACTOR)),
        (f"mlb-batch --device cuda, fp16 file: >= {ROWS_PER_SECOND:,} rows/s end to end",
         _fmt(fp16, ",") + (" rows/s" if fp16 else ""),
         met(fp16, ROWS_PER_SECOND)),
        (f"bf16 training: an epoch >= {TRAIN_FACTOR:g}x faster than on 2 CPUs (same machine, seconds per step)",
         _fmt(speedup) + ("x" if speedup else ""), met(speedup, TRAIN_FACTOR)),
        ("bf16 training: the same test metrics as fp32 on the CPU after the same steps (Jaccard / micro-F1 / "
         "macro-F1, points)", _metric_gap(results), "info"),
    ]


def _metric_gap(results: Dict[str, Any]) -> str:
    accel, cpu = _get(results, "train_accelerator", "test"), _get(results, "train_cpu", "test")
    if not accel or not cpu:
        return "-"
    return " / ".join(f"{100 * (accel[k] - cpu[k]):+.2f}" for k in ("samples_jaccard", "micro_f1", "macro_f1"))


def stages(results: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Where mlb-batch's time goes on the accelerator: tokenizing, the model, and the rest (reading, deciding, writing)."""
    for variant, scored in (("fp16", "accel-fp16"), ("fp32", "accel-fp32")):
        batch, score = _get(results, "batch", variant), _get(results, "scores", scored)
        if batch and score and score["rows"] == batch["rows"]:
            rest = max(0.0, batch["seconds"] - score["tokenize_seconds"] - score["model_seconds"])
            parts = {"preprocess + tokenize": score["tokenize_seconds"], "model (onnxruntime)": score["model_seconds"],
                     "read + decide + write (the rest)": round(rest, 2)}
            return {"variant": variant, "total": batch["seconds"], **parts, "limit": max(parts, key=parts.get)}
    return None


def _training(results: Dict[str, Any]) -> List[str]:
    rows = []
    for key, name in (("train_accelerator", "accelerator"), ("train_cpu", "CPU, all cores"), ("train_cpu2", "CPU, 2 CPUs")):
        t = results.get(key)
        if t:
            test = t.get("test") or {}
            rows.append((name, t["device"], t["precision"], t["steps"], t["step_seconds"], t["epoch_seconds"],
                         t["eval_seconds"], test.get("samples_jaccard"), test.get("micro_f1"), test.get("macro_f1")))
    return ["## Training (`mlb-train`, batch 32)", ""] + table(
        ("run", "device", "precision", "steps", "s/step", "epoch s (training steps)", "eval s", "test Jaccard",
         "test micro-F1", "test macro-F1"), rows)


def _inference(results: Dict[str, Any]) -> List[str]:
    rows = [(b["model"], b["device"], b["provider"], b["rows"], b["errors"], b["seconds"], _fmt(b["rows_per_second"], ","),
             b["gpu_peak_mib"]) for b in (results.get("batch") or {}).values() if b]
    lines = ["## mlb-batch", ""] + table(("file", "--device", "provider", "rows", "errors", "s", "rows/s",
                                          "GPU peak MiB"), rows)
    st = stages(results)
    if st:
        lines += [f"Where the {st['variant']} run's {st['total']} s go: " + ", ".join(
            f"{k} {v} s" for k, v in st.items() if k not in ("variant", "total", "limit")) + f"; the limit: {st['limit']}.", ""]
    pipes = [(k, p["dtype"], p["rows"], p["seconds"], _fmt(p["rows_per_second"], ","), p.get("torch_peak_mib"),
              _fmt(p.get("max_abs_diff_vs_mlb"), ".2e"), p.get("compared_with"))
             for k, p in (results.get("pipeline") or {}).items() if p]
    lines += ["## transformers pipeline, same texts", ""] + table(
        ("batch", "dtype", "rows", "s", "rows/s", "torch peak MiB", "max abs diff from mlb", "against"), pipes)
    return lines


def _agreement(results: Dict[str, Any]) -> List[str]:
    a = results.get("agreement") or {}
    rows = []
    for name in ("accel-fp32", "accel-fp32-no-tf32", "accel-fp16"):
        r = a.get(name)
        if r:
            drops = r.get("drops") or {}
            rows.append((name, r["kind"], f"{r['max_abs_diff']:.2e}", r["changed_decisions"], r["borderline_changes"],
                         " / ".join(_fmt(drops.get(k), "+.2f") for k in ("micro_f1", "macro_f1", "samples_jaccard")),
                         "passed" if r["passed"] else "FAILED: " + "; ".join(r["failures"])))
    lines = [f"## Accelerator against the CPU ({_fmt(a.get('rows'))} rows, fp32 file on the CPU as reference)", ""]
    lines += table(("run", "check", "max abs diff", "decisions changed", "borderline", "drop micro/macro/Jaccard (pt)",
                    "verdict"), rows)
    if "mlb_batch_fp32_rows_with_other_labels" in a:
        lines += [f"mlb-batch fp32 on the accelerator: {a['mlb_batch_fp32_rows_with_other_labels']} rows with other "
                  f"labels than the CPU's, {a['mlb_batch_fp32_error_rows']} error rows.", ""]
    return lines


def _provider_line(found: Optional[Dict[str, Any]]) -> str:
    if not found:
        return "-"
    if found.get("preloaded"):
        return f"started as installed ({found.get('provider')}, libraries found by onnxruntime.preload_dlls)"
    return (f"started only with torch's CUDA libraries on LD_LIBRARY_PATH ({found.get('provider')}); as installed it "
            f"said: {found.get('preload_error')}")


def render(results: Dict[str, Any], brief: bool = False) -> str:
    steps = [(s["name"], s["status"], s.get("seconds"), s.get("error", "")) for s in results.get("steps", [])]
    lines = ["## Targets", ""] + table(("target", "measured", "met"), targets(results))
    lines += ["## Steps", ""] + table(("step", "status", "s", "note"), steps)
    if brief:
        return "\n".join(lines)
    m = results.get("machine") or {}
    head = [f"# GPU check ({results.get('mode')} mode), {results.get('started')}", "",
            f"- GPU: {_fmt(m.get('gpu'))}", f"- CPU: {m.get('cpu')}, {m.get('usable_cores')} usable of {m.get('cores')} "
            f"cores, flags {', '.join(m.get('cpu_flags') or []) or '-'}",
            f"- Python {m.get('python')}; " + ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if v),
            "- the commands imported: " + ", ".join(
                f"{k} {v.get('version')} from {v.get('from')}" if "from" in v else f"{k}: {v.get('error')}"
                for k, v in (results.get("stack") or {}).items() if isinstance(v, dict)),
            f"- onnxruntime providers: {_fmt(_get(results, 'stack', 'onnxruntime_providers'))}; torch CUDA: "
            f"{_fmt(_get(results, 'stack', 'torch_device'))} (bf16: {_fmt(_get(results, 'stack', 'torch_bf16'))})",
            f"- onnxruntime's CUDA provider: {_provider_line(results.get('cuda_provider'))}",
            f"- base model: {results.get('base_model')}; commands run from {_fmt(results.get('commands'))}",
            f"- whole run: {results.get('elapsed_seconds')} s", ""]
    exports = [(e["file"], e["megabytes"], e["seconds"]) for e in (results.get(k) for k in ("export_fp32", "export_fp16")) if e]
    body = _training(results) + ["## Export", ""] + table(("file", "MB", "s"), exports) + _inference(results)
    return "\n".join(head + lines + body + _agreement(results))
