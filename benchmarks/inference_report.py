"""The inference benchmark's report: throughput and memory tables, the distance to the CPU's
limit, the targets, and the bar charts, from ``bench_inference.run_inference``'s results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402
from inference_contenders import CONTENDERS, REFERENCE  # noqa: E402


def report(results: Dict[str, Any], peaks: Dict[str, Any]) -> str:
    """Markdown: throughput and memory (the test file, then the big file), the distance to the limit."""
    return "\n".join(_throughput(results) + _big_file(results) + _distance_to_limit(results, peaks))


def _throughput(results: Dict[str, Any]) -> List[str]:
    out: List[str] = []
    test = results["sets"]["test"]
    ref = test["contenders"].get(REFERENCE)
    out.append(f"### Throughput and memory: GoEmotions test ({test['rows']:,} rows, "
               f"{test['real_tokens']:,} real tokens, {test['mean_tokens']:.1f} per row)\n")
    rows = []
    for name, s in test["contenders"].items():
        ratio = ref["rows_per_s"] / s["rows_per_s"] if ref else None
        title = CONTENDERS[name]["title"]
        if s["rows"] != test["rows"]:
            title += f" (first {s['rows']:,} rows)"
        rows.append([title, c.fmt(s["rows_per_s"]), c.fmt(s["tokens_per_s"]),
                     c.fmt(s["seconds"], 1), c.fmt(s["startup"], 1), c.fmt(s["peak_rss_mib"]),
                     f"{ratio:.2f}x" if ratio else "n/a", s["repeats"]])
    out.append(c.md_table(["contender", "rows/s", "real tokens/s", "seconds", "startup s", "peak RSS MiB",
                           "mlb-batch int8 is ... faster", "runs"], rows))
    out.append("\n`seconds`: median processing time after the model is loaded (read file, tokenize, run, write "
               "JSONL); `startup`: the rest of the process's wall time (imports, model load). rows/s and tokens/s "
               "use `seconds`. Real tokens are counted once with the model's tokenizer (special tokens included, "
               "truncated at 128) and are the same for every contender. Peak RSS is the median over runs of each "
               "process's own `ru_maxrss`. A contender marked \"first N rows\" ran on a prefix of the file: the "
               "recipe pads every row to 128 tokens, so its cost per row does not depend on which rows it gets.\n")
    return out


def _big_file(results: Dict[str, Any]) -> List[str]:
    out: List[str] = []
    test = results["sets"]["test"]
    big = results["sets"].get("big")
    if big:
        out.append(f"### Throughput and memory: test repeated to {big['rows']:,} rows\n")
        rows = []
        for name, s in big["contenders"].items():
            rows.append([CONTENDERS[name]["title"], c.fmt(s["rows_per_s"]), c.fmt(s["tokens_per_s"]),
                         c.fmt(s["seconds"], 1), c.fmt(s["peak_rss_mib"]), c.fmt(s["peak_rss_max_mib"]), s["repeats"]])
        for name, s in test["contenders"].items():
            if CONTENDERS[name]["slow"]:
                rows.append([CONTENDERS[name]["title"] + " (extrapolated, not run)", c.fmt(s["rows_per_s"]),
                             c.fmt(s["tokens_per_s"]), c.fmt(big["rows"] / s["rows_per_s"], 0), "not measured", "", 0])
        out.append(c.md_table(["contender", "rows/s", "real tokens/s", "seconds", "peak RSS MiB (median)",
                               "peak RSS MiB (max)", "runs"], rows))
        out.append(f"\nOnly mlb-batch runs on {big['rows']:,} rows: the other contenders would take most of the "
                   "30-minute budget there. Their rows above are their test-file rates, extrapolated (the file is the test "
                   "file repeated, so their per-row work is the same); their memory at that size was not measured.\n")
    return out


def _distance_to_limit(results: Dict[str, Any], peaks: Dict[str, Any]) -> List[str]:
    from mlbert.runtime.bucketing import DEFAULT_MULTIPLE

    out = ["### Distance to the limit\n"]
    flops = results["flops"]
    test = results["sets"]["test"]
    out.append(f"Encoder: {flops['layers']} layers, hidden {flops['hidden']}, feed-forward {flops['intermediate']}. "
               f"FLOPs per real token = 2 x layers x (4 h^2 + 2 h i) = {flops['matmul_per_token'] / 1e6:.1f} MFLOP for the "
               f"matmuls, plus attention 4 x layers x h x s = {flops['attention_per_token_per_position'] / 1e3:.1f} kFLOP "
               f"per position attended (s = the row's real length; {test['useful_flops'] / test['real_tokens'] / 1e6:.2f} "
               f"MFLOP per real token on average here). Useful FLOP/s = these FLOPs over real tokens only / seconds.\n")
    out.append(f"Peaks: fp32 {peaks['fp32_text']}; int8 {peaks['int8_text']}.\n")
    rows = []
    for set_name, s_set in results["sets"].items():
        for name, s in s_set["contenders"].items():
            peak = peaks["int8"] if "int8" in name else peaks["fp32"]
            rows.append([f"{s_set['rows']:,}", CONTENDERS[name]["title"], f"{100 * s['padding']:.1f}%",
                         f"{s['useful_flops_per_s'] / 1e9:.1f}", f"{s['computed_flops_per_s'] / 1e9:.1f}",
                         f"{100 * s['useful_flops_per_s'] / peak:.0f}%",
                         "int8" if "int8" in name else "fp32"])
    out.append(c.md_table(["rows", "contender", "padding share of computed tokens", "useful GFLOP/s",
                           "computed GFLOP/s (incl. padding, matmuls)", "useful / peak", "peak used"], rows))
    out.append("\nPadding is replayed from each contender's batching on the same token lengths: the recipe pads every "
               "row to 128; the pipelines pad each batch of consecutive rows to its longest row; mlb sorts each "
               f"4,096-row chunk by length and pads token-budget batches to the next multiple of {DEFAULT_MULTIPLE} "
               "(`batch.bucketing.make_batches`).\n")
    alts = results.get("padding_alternatives")
    if alts:
        out.append("mlb's padding under other bucketing settings, replayed on the same test-file lengths (not timed; "
                   "fewer tokens computed is less work, more `session.run` calls is more per-call overhead):\n")
        out.append(c.md_table(
            ["multiple", "token budget", "padding", "of which rounding to the multiple", "session.run calls", ""],
            [[a["multiple"], a["budget"], f"{100 * a['padding']:.1f}%", f"{100 * a['rounding_only']:.1f}%", a["calls"],
              "current default" if a["current"] else ""] for a in alts]))
        out.append("")
    return out


def targets(results: Dict[str, Any]) -> List[List[str]]:
    """Rows for the targets table: target, measured, met?"""
    test = results["sets"]["test"]["contenders"]
    rows: List[List[str]] = []

    def ratio(a: str, b: str) -> Optional[float]:
        if a in test and b in test:
            return test[a]["rows_per_s"] / test[b]["rows_per_s"]
        return None

    def add(target: str, value: Optional[float], need: float, unit: str = "x", less: bool = False) -> None:
        if value is None:
            rows.append([target, "not measured", "n/a"])
            return
        met = value <= need if less else value >= need
        shown = f"{100 * value:.1f}%" if unit == "%" else f"{value:.2f}x"
        rows.append([target, shown, "met" if met else "NOT met"])

    best_pipe = None
    for p in ("pipeline-32", "pipeline-64"):
        if p in test and (best_pipe is None or test[p]["rows_per_s"] > test[best_pipe]["rows_per_s"]):
            best_pipe = p
    if best_pipe:
        add(f"mlb-batch int8 >= 4x transformers pipeline fp32 (best batch size: {best_pipe})", ratio(REFERENCE, best_pipe), 4)
    add("mlb-batch int8 >= 8x the recipe", ratio(REFERENCE, "recipe"), 8)
    add("mlb-batch fp32 >= 1.5x optimum ORTModel pipeline", ratio("mlb-batch-fp32", "optimum-64"), 1.5)
    for q in ("int8", "fp32"):
        if f"mlb-batch-{q}" in test:
            add(f"padding < 10% of computed tokens (mlb {q})", test[f"mlb-batch-{q}"]["padding"], 0.10, "%", less=True)
    for set_name, s_set in results["sets"].items():
        cs = s_set["contenders"]
        for q in ("int8", "fp32"):
            if f"mlb-batch-{q}" in cs and f"mlb-model-{q}" in cs:
                over = cs[f"mlb-batch-{q}"]["seconds"] / cs[f"mlb-model-{q}"]["seconds"] - 1.0
                add(f"end to end within 15% of pure model time ({q}, {s_set['rows']:,} rows)", over, 0.15, "%", less=True)
    return rows


def plot(results: Dict[str, Any], folder: Path, suffix: str = "") -> List[Path]:
    """Bar charts of rows/s and peak RSS on the test file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    test = results["sets"]["test"]["contenders"]
    names = [n for n in test if not CONTENDERS[n].get("aux")]
    titles = [CONTENDERS[n]["title"] for n in names]
    written = []
    for key, label, fname in (("rows_per_s", "rows/s (higher is better)", f"bench_throughput{suffix}.png"),
                              ("peak_rss_mib", "peak resident memory, MiB (lower is better)", f"bench_memory{suffix}.png")):
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 1.2), dpi=110)
        values = [test[n][key] for n in names]
        colors = ["#d62728" if n.startswith("mlb") else "#7f7f7f" for n in names]
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)), titles, fontsize=8)
        ax.invert_yaxis()
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.set_title(f"GoEmotions test, {results['sets']['test']['rows']:,} rows, same model", fontsize=9)
        ax.set_xlim(0, max(values) * 1.18)
        fig.tight_layout()
        path = folder / fname
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
