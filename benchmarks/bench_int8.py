"""int8 schemes side by side, on GoEmotions-length and tweet-length texts: speed, profile, accuracy.

Every candidate is made from the SAME fp32 mlb-export file (``int8_files``), so the files
differ only in how they were quantized. For each text set:

* speed: ``mlb-batch`` (the real CLI, a fresh process per run) on every candidate and the
  ``transformers`` pipeline (fp32, batch 32) on the checkpoint, round-robin with the
  starting contender rotating, medians of ``repeats`` runs; and ``mlb-eval`` on the
  default int8 file, the same texts, its own "Scored N rows ... rows/s" line;
* where the time goes: ``op_profile.profile`` (onnxruntime's profiler) per operator group;
* accuracy (trained checkpoints only): each file's metrics at its saved thresholds
  against the fp32 file's, and its row agreement with the fp32 file (rows whose label set
  stays the same, the largest score difference), through ``trainer.evaluate`` (mlb-eval's
  library). The tables are ``int8_report``'s.

The text sets: GoEmotions test (5,427 Reddit comments, ~19 tokens per row) and
"tweet-length": the GoEmotions dev comments of ``TWEET_MIN_TOKENS`` tokens or more
(~2,500 rows, ~27 tokens per row), generated from the shipped data at run time. Dev never
trains the weights (it only picks thresholds and the early-stopping epoch), the set has
labels, and its mean length matches the English emotion tweets measured on Zen 3 (27
tokens per row). It is not tweets: the domain stays Reddit's.

Run by benchmarks/run_all.py (part ``int8``); alone:

    python benchmarks/bench_int8.py --checkpoint runs/goemotions --fp32 runs/bench/models/goemotions-fp32.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_inference as bi  # noqa: E402
import common as c  # noqa: E402
import op_profile  # noqa: E402
from int8_files import CANDIDATES, DEFAULT, TWEET_MIN_TOKENS, build_candidates, tweet_length_set  # noqa: E402
from int8_report import document, report, targets  # noqa: E402, F401 (run_all and benchmarks_doc read them here)

# key -> (title, how it is made). Keys are plain words: they name files and contenders.
SPEED_ONLY_TARGET_KEYS = ("fp32", DEFAULT)
# Issue 25: the same file and texts with this token budget (other batch-mates) instead of the default.
BATCH_DEPENDENCE_BUDGET = 512
PARTS = ("profile", "speed", "accuracy")
_EVAL_RE = re.compile(r"Scored (\d+) rows with .* in ([0-9.]+) s \(([0-9]+) rows/s\)")


# =========================================================================== speed


def mlb_eval_command(model: Path, data: Path, label_names: Path) -> List[str]:
    return [sys.executable, "-c", "from mlbert.trainer.eval_cli import main; main()", str(model), str(data),
            "--label-names", str(label_names), "--device", "cpu"]


def run_once(name: str, data: Path, out: Path, paths: Dict[str, Path], label_names: Path) -> Dict[str, Any]:
    """One timed process: ``mlb-batch-KEY``, ``mlb-eval-KEY`` or ``pipeline-32``."""
    if name.startswith("pipeline-"):
        return bi.run_contender(name, data, out, paths, timeout=1800)
    kind, key = name.rsplit("-", 1)
    if kind == "mlb-batch":
        return bi.run_mlb_batch(paths[key], data, out, timeout=1800)
    r = c.run_child(mlb_eval_command(paths[key], data, label_names), timeout=1800)
    match = _EVAL_RE.search(r["stderr"])
    if r["rc"] != 0 or match is None:
        raise RuntimeError(f"{name} failed (exit {r['rc']}): {r['stderr'].strip()[-300:]}")
    seconds = float(match.group(2))
    return {"rows": int(match.group(1)), "seconds": seconds, "wall": r["wall"],
            "startup": max(0.0, r["wall"] - seconds), "peak_rss_mib": r["peak_rss_mib"]}


def run_speed(sets: Dict[str, Path], paths: Dict[str, Path], keys: Sequence[str], work: Path, repeats: int,
              label_names: Path, pipeline: bool) -> Dict[str, Any]:
    """Medians of ``repeats`` round-robin runs, per set and contender."""
    names = [f"mlb-batch-{k}" for k in keys] + ([f"mlb-eval-{DEFAULT}"] if DEFAULT in keys else []) + (["pipeline-32"] if pipeline else [])
    out: Dict[str, Any] = {}
    for set_name, data in sets.items():
        runs: Dict[str, List[Dict[str, Any]]] = {n: [] for n in names}
        for rep in range(repeats):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                r = run_once(name, data, work / f"out-{name}.jsonl", paths, label_names)
                c.log(f"int8 speed {set_name} {rep + 1}/{repeats} {name}: {r['rows'] / r['seconds']:,.0f} rows/s")
                runs[name].append(r)
        out[set_name] = {n: {"rows": rs[0]["rows"], "seconds": c.median([r["seconds"] for r in rs]),
                             "seconds_all": [r["seconds"] for r in rs], "rows_per_s": rs[0]["rows"] / c.median(
                                 [r["seconds"] for r in rs]), "wall": c.median([r["wall"] for r in rs]),
                             "rows_per_s_wall": rs[0]["rows"] / c.median([r["wall"] for r in rs]),
                             "peak_rss_mib": c.median([r["peak_rss_mib"] for r in rs]), "repeats": len(rs)}
                         for n, rs in runs.items()}
    return out


# =========================================================================== accuracy and profile


def run_accuracy(sets: Dict[str, Path], paths: Dict[str, Path], keys: Sequence[str], label_names: Path,
                 first_label_id: int = 0) -> Dict[str, Any]:
    """Per set and file: metrics at the saved thresholds (all files share them), row agreement with the
    fp32 file, and how many rows a smaller token budget (512: other batch-mates) moves (issue 25)."""
    from mlbert.runtime.classifier import load
    from mlbert.decisions import row_agreement
    from mlbert.trainer.data import read_labelled_file
    from mlbert.trainer.evaluate import evaluate_model, load_eval_model, rows_agreement

    out: Dict[str, Any] = {}
    for set_name, data in sets.items():
        labelled = read_labelled_file(str(data), label_names=c.read_lines(label_names), label_id_base=first_label_id)
        out[set_name] = {}
        evaluations = {}
        for key in keys:
            model = load_eval_model(str(paths[key]), device="cpu")
            ev = evaluations[key] = evaluate_model(model, labelled.texts, labelled.label_names, labelled.labels,
                                                   labelled.source)
            row = {k: float(ev.metrics["model"][k]) for k in ("micro_f1", "macro_f1", "samples_jaccard")}
            agreement = rows_agreement(evaluations["fp32"], ev)
            row.update(same_rows=agreement.same_rows, rows=agreement.rows, max_abs_diff=agreement.max_abs_diff)
            small = load(paths[key], "cpu", token_budget=BATCH_DEPENDENCE_BUDGET).predict_proba(labelled.texts,
                                                                                          errors="record")
            moved = row_agreement(ev.probabilities, small, model.thresholds)
            row.update(budget_changed_rows=moved.changed_rows, budget_max_abs_diff=moved.max_abs_diff)
            out[set_name][key] = row
            c.log(f"int8 accuracy {set_name} {key}: {row}")
    return out


def run_profiles(sets: Dict[str, Path], paths: Dict[str, Path], keys: Sequence[str], rows: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for set_name, data in sets.items():
        texts = c.read_tsv_texts(data, limit=rows)
        out[set_name] = {key: op_profile.profile(paths[key], texts) for key in keys}
        c.log(f"int8 profile {set_name}: done")
    return out


def run_int8(checkpoint: Path, fp32: Path, work: Path, *, data_dir: Path = c.DATA_DIR, repeats: int = 3,
             keys: Sequence[str] = tuple(CANDIDATES), trained: bool = True, rows: Optional[int] = None,
             profile_rows: int = 2000, pipeline: bool = True, parts: Sequence[str] = PARTS,
             first_label_id: int = 0) -> Dict[str, Any]:
    """The whole int8 part: files, text sets, speed, profiles, accuracy; ``parts`` picks among the last three.
    The main text set is ``data_dir``'s test split, named after the folder."""
    from mlbert.runtime.cpus import CpuFeatures

    started = time.monotonic()
    paths = build_candidates(fp32, checkpoint, work / "files", keys, data_dir)
    paths["checkpoint"] = checkpoint
    tweets = tweet_length_set(fp32, data_dir, work)
    # Plain TSV copies (cut to ``rows``), so no contender pays for decompressing.
    sets = {k: c.make_input(v, min(rows or 10**9, c.count_text_rows(v)), work)
            for k, v in {data_dir.name: data_dir / "test.tsv.gz", "tweet-length": tweets}.items()}
    lengths = {k: bi.token_lengths(fp32, v)[0] for k, v in sets.items()}
    label_names = data_dir / "emotions.txt"
    results: Dict[str, Any] = {
        # benchmarks/force_avx2.py runs this with onnxruntime held to its AVX2 kernels: judge by that kind.
        "cpu": os.environ.get("MLB_BENCH_FORCED_INT8_PATH") or CpuFeatures.here().int8_path,
        "forced": bool(os.environ.get("MLB_BENCH_FORCED_INT8_PATH")), "keys": list(keys), "default": DEFAULT,
        "files": {k: {"path": str(p), "mb": p.stat().st_size / 1e6} for k, p in paths.items() if k in keys},
        "sets": {k: {"path": str(v), "rows": int(len(lengths[k])), "mean_tokens": float(lengths[k].mean())}
                 for k, v in sets.items()},
        "tweet_min_tokens": TWEET_MIN_TOKENS, "budget": BATCH_DEPENDENCE_BUDGET,
    }
    if "profile" in parts:
        results["profiles"] = run_profiles(sets, paths, keys, profile_rows)
    if "speed" in parts:
        results["speed"] = run_speed(sets, paths, keys, work, repeats, label_names, pipeline)
    if trained and "accuracy" in parts:
        results["accuracy"] = run_accuracy(sets, paths, keys, label_names, first_label_id)
    results["elapsed_s"] = time.monotonic() - started
    return results


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--fp32", type=Path, required=True, help="the fp32 file mlb-export wrote from --checkpoint")
    p.add_argument("--work", type=Path, default=c.WORK_DIR / "int8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rows", type=int, help="cut each text set to N rows")
    p.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated keys (fp32 always runs)")
    p.add_argument("--no-accuracy", action="store_true", help="speed and profile only (e.g. a random head)")
    p.add_argument("--no-pipeline", action="store_true")
    p.add_argument("--data-dir", type=Path, default=c.DATA_DIR, help="data folder: its test split is the main set, "
                   "its dev split gives the tweet-length set and the calibration texts [%(default)s]")
    p.add_argument("--first-label-id", type=int, default=0, help="the data's first label id (XED English: 1)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of: " + ", ".join(PARTS))
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--doc", type=Path, help="write the tables as a document (machine, command, targets) here")
    p.add_argument("--block", help="write them into docs/BENCHMARKS.md as the block NAME (doc_sections.update_block)")
    p.add_argument("--from-json", type=Path, help="measure nothing: render the results a --json run wrote")
    a = p.parse_args(argv)
    keys = ["fp32"] + [k for k in a.candidates.split(",") if k and k != "fp32"]
    if a.from_json:
        results = json.loads(a.from_json.read_text(encoding="utf-8"))
    else:
        results = run_int8(a.checkpoint, a.fp32, a.work, repeats=a.repeats, keys=keys, trained=not a.no_accuracy,
                           rows=a.rows, pipeline=not a.no_pipeline, data_dir=a.data_dir,
                           parts=[x for x in a.parts.split(",") if x], first_label_id=a.first_label_id)
        results.update(machine=c.machine_info(), argv=list(argv if argv is not None else sys.argv[1:]))
    if a.json and not a.from_json:
        a.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    text = report(results) + "\n" + c.md_table(["target", "measured", "status"], targets(results))
    print(text)
    page = document(results, text, argv if argv is not None else sys.argv[1:])
    if a.doc:
        a.doc.write_text(page, encoding="utf-8")
        c.log(f"wrote {c.shown_path(str(a.doc))}")
    if a.block:
        import doc_sections

        # One level down: a block sits inside BENCHMARKS.md, under its own "##" title.
        doc_sections.update_block(c.REPO / "docs" / "BENCHMARKS.md", a.block,
                                  "\n".join(("#" + line) if line.startswith("#") else line for line in page.splitlines()))
        c.log(f"wrote the {a.block} block of docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
