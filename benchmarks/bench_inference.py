"""Inference side by side: the recipe, the transformers pipeline, optimum, and mlb-batch.

Every contender runs the SAME model (one checkpoint and its mlb-export files) in its own
fresh process, reads the same TSV file and writes one JSONL record per row (labels and
per-label scores), so each process's peak RSS (``wait4``) is its own and each timing is
files in to file out. Contenders are interleaved round-robin (the starting contender
rotates each repeat) so that noise from a shared machine hits all of them alike; the
tables report medians.

Timings: ``seconds`` is the processing time after the model is loaded (reading the
file, tokenizing, inference, writing); ``startup`` is the rest of the process's wall time
(interpreter, imports, model load). mlb-batch's own summary line gives its processing
seconds (one decimal).

Run by benchmarks/run_all.py; on its own:

    python benchmarks/bench_inference.py --checkpoint runs/goemotions \\
        --fp32 runs/goemotions-export/model-none.onnx --int8 runs/goemotions-export/model-int8.onnx --quick

The contenders are named in ``inference_contenders.py``, each runs in its own process from
``inference_workers.py`` (or is the real ``mlb-batch``), and ``inference_report.py`` writes the
tables and plots.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402
from flops import cpu_peaks, encoder_flops, flops_for  # noqa: E402
from inference_contenders import CONTENDERS, RECIPE_LENGTH  # noqa: E402

_SUMMARY_RE = re.compile(r"mlb-batch: (\d+) rows, (\d+) errors, ([0-9.]+) s,")

# =========================================================================== orchestration


def optimum_folder(checkpoint: Path, fp32: Path, folder: Path) -> Path:
    """A folder optimum can load: the checkpoint's config and tokenizer beside the fp32 ONNX file.

    The ONNX file is mlb-export's fp32 output (the same graph mlb-batch runs; the mlb
    header in its metadata is ignored by optimum), so both run identical weights.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(checkpoint):
        if name.endswith((".json", ".txt")) and name != "mlb.json":
            shutil.copy2(checkpoint / name, folder / name)
    target = folder / "model.onnx"
    if not target.exists():
        try:
            os.link(fp32, target)
        except OSError:
            shutil.copy2(fp32, target)
    return folder


def contender_command(name: str, data: Path, out: Path, paths: Dict[str, Path]) -> List[str]:
    me = [sys.executable, str(Path(__file__).resolve().parent / "inference_workers.py")]
    spec = CONTENDERS.get(name, {})
    if name == "recipe":
        return me + ["--worker", "recipe", "--checkpoint", str(paths["checkpoint"]), "--input", str(data), "--output", str(out)]
    if name.startswith("pipeline-"):
        return me + ["--worker", "pipeline", "--checkpoint", str(paths["checkpoint"]), "--batch-size", str(spec["batch"]),
                     "--input", str(data), "--output", str(out)]
    if name.startswith("optimum-"):
        return me + ["--worker", "optimum", "--onnx-dir", str(paths["optimum"]), "--batch-size", str(spec["batch"]),
                     "--input", str(data), "--output", str(out)]
    if name.startswith("mlb-model-"):
        quant = "int8" if "int8" in name else "fp32"
        return me + ["--worker", "mlb-model", "--onnx", str(paths[quant]), "--input", str(data),
                     "--output", str(out), "--multiple", str(spec.get("multiple", 0))]
    if name.startswith("mlb-batch-"):
        return mlb_batch_command(paths[spec.get("model", name.rsplit("-", 1)[1])], data, out) + spec.get("args", [])
    raise ValueError(name)


def mlb_batch_command(model: Path, data: Path, out: Path) -> List[str]:
    """The real ``mlb-batch`` CLI on a GoEmotions-style TSV (text in column 1, id in column 3)."""
    return [sys.executable, "-m", "mlbert.batch", str(data), "-m", str(model), "-o", str(out),
            "--text-column", "column_1", "--id-column", "column_3", "--device", "cpu"]


def mlb_batch_result(stderr: str, what: str) -> Dict[str, Any]:
    """Rows and processing seconds from mlb-batch's summary line (its last on stderr)."""
    m = None
    for line in stderr.splitlines():
        m = _SUMMARY_RE.search(line) or m
    if m is None:
        raise RuntimeError(f"{what}: no summary line in its stderr")
    return {"rows": int(m.group(1)), "seconds": float(m.group(3)),
            "notes": [line for line in stderr.splitlines() if line.startswith("mlb-batch: ") and not _SUMMARY_RE.search(line)]}


def run_mlb_batch(model: Path, data: Path, out: Path, timeout: float) -> Dict[str, Any]:
    """One mlb-batch process on any model file: rows, seconds, wall, peak RSS, its notes (record count checked)."""
    return run_contender("mlb-batch-model", data, out, {"model": model}, timeout)


def run_contender(name: str, data: Path, out: Path, paths: Dict[str, Path], timeout: float) -> Dict[str, Any]:
    cmd = contender_command(name, data, out, paths)
    if out.exists():
        out.unlink()
    r = c.run_child(cmd, timeout=timeout)
    if r["rc"] not in (0, 3):
        tail = " | ".join(r["stderr"].strip().splitlines()[-3:])
        raise RuntimeError(f"{name} failed (exit {r['rc']}): {tail}")
    if name.startswith("mlb-batch-"):
        result = mlb_batch_result(r["stderr"], name)
    else:
        result = c.last_json_line(r["stdout"])
    if not name.startswith("mlb-model-"):
        written = c.count_lines(out)
        if written != result["rows"]:
            raise RuntimeError(f"{name}: wrote {written} records for {result['rows']} rows")
    result.update(wall=r["wall"], peak_rss_mib=r["peak_rss_mib"], startup=max(0.0, r["wall"] - result["seconds"]),
                  cpu_s=r["user_s"] + r["sys_s"])
    return result


def token_lengths(fp32: Path, source: Path) -> "Any":
    """Real tokens per row of ``source`` as mlb reads it (header tokenizer, preprocessing, truncation)."""
    import numpy as np

    from mlbert.runtime.encoder import Encoder

    header = c.read_header(fp32)
    encoder = Encoder(header)
    texts = header.preprocessing.apply(c.read_tsv_texts(source))
    lengths = np.concatenate([encoder.encode(texts[i:i + 4096]).lengths for i in range(0, len(texts), 4096)])
    return lengths, int(header.max_length)


def computed_tokens(name: str, lengths, max_length: int) -> int:
    """Positions the contender's batches compute (real tokens plus padding), replayed from its batching."""
    import numpy as np

    from mlbert.runtime.bucketing import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MULTIPLE, DEFAULT_TOKEN_BUDGET_CPU, bucket_lengths, make_batches
    from mlbert.runtime.classifier import DEFAULT_CHUNK_SIZE

    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    if name == "recipe":
        return int(len(lengths) * RECIPE_LENGTH)
    spec = CONTENDERS[name]
    if "batch" in spec:  # pipelines: consecutive rows, padded to the longest of the batch
        b = spec["batch"]
        return int(sum(len(lengths[i:i + b]) * int(lengths[i:i + b].max()) for i in range(0, len(lengths), b)))
    multiple = spec.get("multiple") or DEFAULT_MULTIPLE
    total = 0  # mlb: per chunk, sorted token-budget batches padded to multiples of 8
    for start in range(0, len(lengths), DEFAULT_CHUNK_SIZE):
        part = lengths[start:start + DEFAULT_CHUNK_SIZE]
        for idx in make_batches(part, DEFAULT_TOKEN_BUDGET_CPU, max_length, multiple, DEFAULT_MAX_BATCH_ROWS):
            total += len(idx) * int(bucket_lengths(part[idx].max(keepdims=True), max_length, multiple)[0])
    return int(total)


def padding_alternatives(lengths, max_length: int) -> List[Dict[str, Any]]:
    """Padding and session.run calls that other bucketing settings would give on the same lengths.

    Replayed with ``batch.bucketing.make_batches`` per 4,096-row chunk (no model runs), so
    the batch owner can see what a setting change buys before timing it. Also splits the
    current setting's padding into rounding up to the multiple versus batches spanning
    several lengths.
    """
    import numpy as np

    from mlbert.runtime.bucketing import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MULTIPLE, DEFAULT_TOKEN_BUDGET_CPU, bucket_lengths, make_batches
    from mlbert.runtime.classifier import DEFAULT_CHUNK_SIZE

    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    real = int(lengths.sum())
    out = []
    settings = sorted({(DEFAULT_MULTIPLE, DEFAULT_TOKEN_BUDGET_CPU), (8, 8192), (4, 2048), (1, 2048), (1, 1024), (2, 1024)})
    for multiple, budget in settings:
        total = calls = 0
        for start in range(0, len(lengths), DEFAULT_CHUNK_SIZE):
            part = lengths[start:start + DEFAULT_CHUNK_SIZE]
            batches = make_batches(part, budget, max_length, multiple, DEFAULT_MAX_BATCH_ROWS)
            calls += len(batches)
            for idx in batches:
                total += len(idx) * int(bucket_lengths(part[idx].max(keepdims=True), max_length, multiple)[0])
        rounding = int(bucket_lengths(lengths, max_length, multiple).sum())
        out.append({"multiple": multiple, "budget": budget, "padding": 1.0 - real / total,
                    "rounding_only": 1.0 - real / rounding, "calls": calls,
                    "current": (multiple, budget) == (DEFAULT_MULTIPLE, DEFAULT_TOKEN_BUDGET_CPU)})
    return out


def summarize(name: str, runs: List[Dict[str, Any]], lengths: "Any", max_length: int,
              flops: Dict[str, Any]) -> Dict[str, Any]:
    """One contender's medians over its runs, with the tokens and FLOPs its rows needed and computed."""
    import numpy as np

    seconds = c.median([r["seconds"] for r in runs])
    real = int(lengths.sum())
    useful = flops_for(flops, float(real), float((lengths.astype(np.float64) ** 2).sum()))
    computed = computed_tokens(name, lengths, max_length)
    return {
        "rows": len(lengths), "repeats": len(runs), "seconds": seconds, "seconds_all": [r["seconds"] for r in runs],
        "rows_per_s": len(lengths) / seconds, "tokens_per_s": real / seconds,
        "startup": c.median([r["startup"] for r in runs]), "wall": c.median([r["wall"] for r in runs]),
        "peak_rss_mib": c.median([r["peak_rss_mib"] for r in runs]),
        "peak_rss_max_mib": max(r["peak_rss_mib"] for r in runs),
        "computed_tokens": computed, "padding": 1.0 - real / computed if computed else 0.0,
        "useful_flops_per_s": useful / seconds,
        "computed_flops_per_s": flops_for(flops, float(computed), float(computed) * 0) / seconds,
        "tokenize_seconds": c.median([r["tokenize_seconds"] for r in runs]) if "tokenize_seconds" in runs[0] else None,
    }


def run_inference(checkpoint: Path, fp32: Path, int8: Path, work: Path, *, rows: Optional[int], big_rows: Optional[int],
                  repeats: int, big_repeats: int, contenders: Sequence[str], timeout: float = 1800.0,
                  data: Path = c.DATA_DIR / "test.tsv.gz", recipe_rows: Optional[int] = None) -> Dict[str, Any]:
    """All contenders on the test file (``rows`` cut, None = all), then the fast ones on ``big_rows``.

    ``recipe_rows``: run the recipe on the first N rows only. Its cost per row is the same
    for every row (each is padded to 128 tokens), so its rows/s on a prefix is its rows/s
    on the whole file; the report says when this was done.
    """
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": checkpoint, "fp32": fp32, "int8": int8,
             "optimum": optimum_folder(checkpoint, fp32, work / "optimum-fp32")}
    source_lengths, max_length = token_lengths(fp32, data)
    n_source = len(source_lengths)
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    flops = encoder_flops(config)
    sets = [("test", rows or n_source, list(contenders), repeats)]
    if big_rows:
        sets.append(("big", big_rows, [n for n in contenders if CONTENDERS[n].get("big")], big_repeats))
    results: Dict[str, Any] = {"flops": flops, "max_length": max_length, "sets": {}, "data": str(data),
                               "source_rows": n_source}
    for set_name, n_rows, names, reps in sets:
        path = c.make_input(data, n_rows, work)  # plain TSV, also at the source's own size (data may be .gz)
        lengths = np.resize(source_lengths, n_rows)  # the file is the source repeated / cut
        real = int(lengths.sum())
        useful = flops_for(flops, float(real), float((lengths.astype(np.float64) ** 2).sum()))
        runs: Dict[str, List[Dict[str, Any]]] = {n: [] for n in names}
        own_rows = {n: n_rows for n in names}
        if recipe_rows and "recipe" in names and recipe_rows < n_rows:
            own_rows["recipe"] = recipe_rows
        for rep in range(reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                n_own = own_rows[name]
                own_path = path if n_own == n_rows else c.make_input(data, n_own, work)
                c.log(f"inference {set_name} ({n_own} rows) repeat {rep + 1}/{reps}: {name}")
                r = run_contender(name, own_path, work / f"out-{name}.jsonl", paths, timeout)
                c.log(f"  {r['rows'] / r['seconds']:,.0f} rows/s, {r['seconds']:.1f} s + {r['startup']:.1f} s startup, "
                      f"peak RSS {r['peak_rss_mib']:.0f} MiB")
                runs[name].append(r)
        summary = {name: summarize(name, runs[name], lengths[:own_rows[name]], max_length, flops) for name in names}
        if set_name == "test":
            results["padding_alternatives"] = padding_alternatives(lengths, max_length)
        results["sets"][set_name] = {"rows": n_rows, "real_tokens": real, "useful_flops": useful,
                                     "mean_tokens": real / n_rows, "contenders": summary}
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Inference benchmark (see the module docstring).")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--fp32", type=Path)
    parser.add_argument("--int8", type=Path)
    parser.add_argument("--work", type=Path, default=c.WORK_DIR)
    parser.add_argument("--quick", action="store_true", help="500 rows, 1 repeat, no big file")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--big-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-repeats", type=int, default=1)
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    args = parser.parse_args(argv)
    if not (args.checkpoint and args.fp32 and args.int8):
        parser.error("--checkpoint, --fp32 and --int8 are required")
    if args.quick:
        args.rows, args.big_rows, args.repeats = args.rows or 500, None, 1
    results = run_inference(args.checkpoint, args.fp32, args.int8, args.work, rows=args.rows, big_rows=args.big_rows,
                            repeats=args.repeats, big_repeats=args.big_repeats, contenders=args.contenders.split(","))
    from inference_report import report

    print(report(results, cpu_peaks(c.machine_info())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
