"""bench_int8's tables: files, speed, profiles, the AVX2 estimate, accuracy and row agreement, targets."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import common as c
import op_profile
from int8_files import CANDIDATES, DEFAULT

# Targets of issue 12 per machine kind (runtime.cpus.CpuFeatures.int8_path): (int8 / fp32, int8 / pipeline).
TARGETS = {"avx512_vnni": (2.5, 5.0), "avx2": (1.8, 4.0)}
# Issue 25: int8 / fp32 on tweet-length texts on VNNI with the row-independent file; share of rows with
# fp32's label set (percent), largest score difference, largest metric change (points).
ROW_SPEED_TARGET = 2.3
AGREEMENT_TARGET = (99.0, 0.05, 0.3)
METRICS = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("samples_jaccard", "Jaccard"))


def _ratio(speed: Dict[str, Any], a: str, b: str) -> Optional[float]:
    if a in speed and b in speed:
        return speed[a]["rows_per_s"] / speed[b]["rows_per_s"]
    return None


def targets(results: Dict[str, Any]) -> List[List[str]]:
    """Rows for the targets table (issue 12), for this machine kind."""
    need = TARGETS.get(results["cpu"])
    rows: List[List[str]] = []
    for set_name, speed in (results.get("speed") or {}).items():
        title = f"{set_name} ({results['sets'][set_name]['mean_tokens']:.1f} tokens/row)"
        for what, other, idx in (("fp32 mlb-batch", "mlb-batch-fp32", 0), ("transformers pipeline fp32, batch 32",
                                                                          "pipeline-32", 1)):
            value = _ratio(speed, f"mlb-batch-{DEFAULT}", other)
            if value is None:
                continue
            goal = f" >= {need[idx]}x" if need else ""
            status = ("met" if value >= need[idx] else "NOT met") if need else "no target for this CPU kind"
            rows.append([f"mlb-batch int8 / {what}{goal}, {title}", f"{value:.2f}x", status])
    tweets = (results.get("speed") or {}).get("tweet-length", {})
    value = _ratio(tweets, f"mlb-batch-{DEFAULT}", "mlb-batch-fp32")
    if value is not None and results["cpu"] == "avx512_vnni":
        rows.append([f"row-independent int8 / fp32 >= {ROW_SPEED_TARGET}x on tweet-length texts (issue 25)",
                     f"{value:.2f}x", "met" if value >= ROW_SPEED_TARGET else "NOT met"])
    rows += agreement_targets(results)
    for set_name, acc in (results.get("accuracy") or {}).items():
        d = {k: 100 * (acc[DEFAULT][k] - acc["fp32"][k]) for k in ("micro_f1", "samples_jaccard", "macro_f1")}
        ok = d["micro_f1"] >= -1.0 and d["samples_jaccard"] >= -1.0 and d["macro_f1"] >= -1.5
        rows.append([f"int8 within 1 point of fp32 (micro-F1, Jaccard; macro-F1 1.5), {set_name}",
                     f"micro-F1 {d['micro_f1']:+.2f}, Jaccard {d['samples_jaccard']:+.2f}, macro-F1 {d['macro_f1']:+.2f}",
                     "met" if ok else "NOT met"])
    return rows


def agreement_targets(results: Dict[str, Any]) -> List[List[str]]:
    """Issue 25's rows: the default int8 file against fp32, row by row and in aggregate, per text set."""
    share, diff, points = AGREEMENT_TARGET
    rows = []
    for set_name, acc in (results.get("accuracy") or {}).items():
        a, f = acc[DEFAULT], acc["fp32"]
        same = 100.0 * a["same_rows"] / max(1, a["rows"])
        worst = max(abs(100 * (a[k] - f[k])) for k, _ in METRICS)
        ok = same >= share and a["max_abs_diff"] <= diff and worst <= points
        rows.append([f"int8 agrees with fp32 row by row (>= {share:g}% same labels, scores within {diff:g}, metrics "
                     f"within {points:g} point), {set_name}",
                     f"{same:.2f}%, {a['max_abs_diff']:.3f}, {worst:.2f} point", "met" if ok else "NOT met"])
        rows.append([f"int8 scores do not depend on the batch (token budget {results.get('budget', 512)}), {set_name}",
                     f"{a['budget_changed_rows']} rows changed, largest change {a['budget_max_abs_diff']:.1e}",
                     "met" if a["budget_max_abs_diff"] <= 1e-5 else "NOT met"])
    return rows


def accuracy_table(results: Dict[str, Any]) -> str:
    """Per file and set: metric changes against fp32, row agreement, and what another batch does to it."""
    acc, sets = results["accuracy"], results["sets"]
    rows = []
    for k in results["keys"]:
        row = [CANDIDATES[k][0]]
        for s in sets:
            a, f = acc[s][k], acc[s]["fp32"]
            metrics = " / ".join((f"{a[m]:.4f}" if k == "fp32" else f"{100 * (a[m] - f[m]):+.2f}") for m, _ in METRICS)
            row += [metrics, f"{100.0 * a['same_rows'] / max(1, a['rows']):.2f}% ({a['rows'] - a['same_rows']})",
                    f"{a['max_abs_diff']:.4f}", f"{a['budget_changed_rows']} / {a['budget_max_abs_diff']:.1e}"]
        rows.append(row)
    header = ["file"]
    for s in sets:
        header += [f"{s}: micro-F1 / macro-F1 / Jaccard (points vs fp32)", "rows with fp32's labels (rows moved)",
                   "largest score difference", f"token budget {results.get('budget', 512)}: rows moved / largest change"]
    return c.md_table(header, rows)


def avx2_estimate(results: Dict[str, Any]) -> str:
    """What these profiles say about an AVX2-only CPU, under a stated assumption (not a measurement).

    AVX2 has no int8 dot product: a U8S8 product takes VPMADDUBSW + VPMADDWD (+ an add) per
    32 multiply-adds where AVX-512 VNNI takes one VPDPBUSD, so with two vector multiply pipes
    an AVX2 core does about half the int8 multiply-adds per cycle of a VNNI core, while both
    do the same fp32 FMAs per cycle (two 256-bit FMA pipes: Zen 3, and Zen 4 splitting 512-bit
    instructions). So on AVX2 the int8 products take ~2x their time here and the rest the
    same: model-time ratio ~ F / (2 P + O), and at most F / O however fast the products were.
    """
    lines = ["### What these profiles imply for an AVX2-only CPU (an estimate, not a measurement)\n",
             "Assumption: an AVX2 core does about half the int8 multiply-adds per cycle of an AVX-512 VNNI core "
             "(VPMADDUBSW + VPMADDWD per 32 products against one VPDPBUSD) and the same fp32 FMAs per cycle (two "
             "256-bit FMA pipes on Zen 3 and Zen 4), so int8 matrix products take ~2x their time here and every other "
             "operator the same. F = the fp32 file's kernel time, P = the int8 file's integer matrix products, O = its "
             "other operators:\n"]
    rows = []
    for s, prof in results["profiles"].items():
        f = prof["fp32"]["kernel_s"]
        # u8u8 runs widening kernels on both CPUs, not VPMADDUBSW: the assumption does not cover it.
        for key in [k for k in results["keys"] if k not in ("fp32", "fp32fused", "u8u8") and k in prof]:
            p_ = prof[key]["groups"].get("int8 matrix products", 0.0)
            o = prof[key]["kernel_s"] - p_
            rows.append([s, CANDIDATES[key][0], f"{f / prof[key]['kernel_s']:.2f}x", f"{f / (2 * p_ + o):.2f}x",
                         f"{f / o:.2f}x" if o else "n/a"])
    lines.append(c.md_table(["texts", "file", "int8 / fp32 model time here", "estimated on AVX2: F / (2P + O)",
                             "bound on AVX2 however fast the products: F / O"], rows))
    return "\n".join(lines) + "\n"


def report(results: Dict[str, Any]) -> str:
    """Files, text sets, then whichever of speed, profiles and accuracy the run measured."""
    out: List[str] = []
    sets = results["sets"]
    keys = results["keys"]
    out.append(f"Files (all from the same fp32 file; `mlb-export --quantize int8` writes `{DEFAULT}`):\n")
    out.append(c.md_table(["file", "made by", "MB"],
                          [[CANDIDATES[k][0], CANDIDATES[k][1], f"{results['files'][k]['mb']:.1f}"] for k in keys]))
    out.append("\nText sets: " + "; ".join(f"**{k}**: {v['rows']:,} rows, {v['mean_tokens']:.1f} tokens per row"
                                         for k, v in sets.items())
               + f" (tweet-length = the dev rows of {results['tweet_min_tokens']} tokens or more).\n")
    if results.get("speed"):
        out += speed_section(results)
    if results.get("profiles"):
        out.append("\n### Where the time goes (onnxruntime profiler, kernel time per operator group)\n")
        for s in sets:
            prof = results["profiles"][s]
            out.append(f"{s}, first {prof[keys[0]]['rows']:,} rows:\n")
            out.append(op_profile.table(prof, {k: CANDIDATES[k][0] for k in keys}))
            out.append("")
        if results["cpu"] == "avx512_vnni":
            out.append(avx2_estimate(results))
    if results.get("accuracy"):
        out.append("### Accuracy and row agreement at the saved thresholds (against the fp32 file)\n")
        out.append(accuracy_table(results))
        out.append("\nRow agreement: the share of rows whose label set (every label's decision) is the fp32 file's, "
                   "and the largest change of any one score; the last column scores the same texts again with "
                   "another token budget (other batch-mates) and counts the rows whose labels move (issue 25).\n")
    return "\n".join(out)


def speed_section(results: Dict[str, Any]) -> List[str]:
    """The speed table (rows/s and the ratio to the fp32 file) and how it was timed."""
    sets, keys, speed = results["sets"], results["keys"], results["speed"]
    header = ["file"]
    for s in sets:
        header += [f"{s} rows/s", f"{s} vs fp32"]
    titles = {f"mlb-batch-{k}": f"mlb-batch, {CANDIDATES[k][0]}" for k in keys}
    first = speed[next(iter(sets))]
    # mlb-eval ran on the default file of its run (results.json keeps it under that file's key).
    evaluated = next((k for k in keys if f"mlb-eval-{k}" in first), DEFAULT)
    titles.update({f"mlb-eval-{evaluated}": f"mlb-eval, {CANDIDATES[evaluated][0]} (its own rows/s: scoring only)",
                   "pipeline-32": "transformers pipeline fp32, batch 32"})
    rows = []
    for name, title in titles.items():
        if all(name in speed[s] for s in sets):
            rows.append([title] + [x for s in sets for x in (c.fmt(speed[s][name]["rows_per_s"]),
                                                              f"{_ratio(speed[s], name, 'mlb-batch-fp32') or 0:.2f}x")])
    walls = "; ".join(f"{s} {speed[s][f'mlb-batch-{DEFAULT}']['rows_per_s_wall']:,.0f} / "
                      f"{speed[s]['mlb-batch-fp32']['rows_per_s_wall']:,.0f} rows/s" for s in sets)
    if f"mlb-eval-{evaluated}" in first:
        walls += ", mlb-eval " + "; ".join(f"{s} {speed[s][f'mlb-eval-{evaluated}']['rows_per_s_wall']:,.0f}"
                                           for s in sets) + " rows/s"
    return ["### Speed\n", c.md_table(header, rows),
            f"\nrows/s: rows over the median processing seconds of {first['mlb-batch-fp32']['repeats']} runs (mlb-batch's "
            "summary line: read, tokenize, run, write; the pipeline: the same, timed inside the process; mlb-eval: its "
            "\"Scored\" line, which also computes the metrics). Whole processes including start-up (mlb-batch int8 / "
            f"fp32): {walls}."]


def document(results: Dict[str, Any], text: str, argv: Sequence[str]) -> str:
    """The report as a stand-alone page: what ran it, on which machine, with which kernels."""
    m = results.get("machine") or c.machine_info()
    command = " ".join(["python benchmarks/bench_int8.py", *[c.shown_path(x) for x in results.get("argv", argv)]])
    if results.get("forced"):
        command = f"python benchmarks/force_avx2.py -- {command}"
    kernels = (f"onnxruntime and PyTorch held to their **{results['cpu']}** kernels by `benchmarks/force_avx2.py` "
               "(the same cores, clocks and caches; other kernels)" if results.get("forced")
               else f"int8 kernel path `{results['cpu']}`")
    return (f"# int8 schemes side by side on {next(iter(results['sets']))}: {kernels}\n\n"
            f"Written by `{command}`, finished {m['date']}, in {results['elapsed_s'] / 60:.1f} minutes, on "
            f"{c.machine_line(m)}.\n\n" + text + "\n")
