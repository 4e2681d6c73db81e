"""One stream against two: mlb-batch on an idle CPU and on a CPU another process keeps busy.

Why: since ``--streams`` (``batch.runtime.cpu_streams``), mlb-batch scores two batches at
once on a CPU, each on half of the threads, where it used to split every batch across all
of them. A batch split across threads waits, after each of its ~200 operators, for the
slowest thread; when another process takes one of the cores (a training job, a second cron
job), every operator waits for the thread that lost its core. Two streams do not wait for
each other. This measures both settings on the same model and file, whole ``mlb-batch``
processes, in two conditions:

* idle: nothing else runs;
* one core busy: a Python busy loop (one process, one core) runs for the whole condition.

Rounds alternate the contenders (``--streams 1`` first in odd rounds, ``2`` in even
ones); the figures are medians of ``--repeats`` runs. Every run's output is compared with
the first ``--streams 1`` run's: the bytes must be the same.

    python benchmarks/bench_streams.py --fp32 runs/bench/models/goemotions-fp32.onnx \\
        --int8 runs/bench/models/goemotions-int8.onnx --write-doc
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_inference as bi  # noqa: E402
import common as c  # noqa: E402

DOC = c.REPO / "docs" / "BENCHMARKS-streams.md"
BUSY_LOOP = "while True: pass"
CONDITIONS = ("idle", "one core busy")


def run_mlb_batch(model: Path, data: Path, out: Path, streams: int) -> Dict[str, Any]:
    """One whole mlb-batch process with ``--streams``; rows, processing seconds, peak RSS, output bytes."""
    r = c.run_child(bi.mlb_batch_command(model, data, out) + ["--streams", str(streams)], timeout=1800)
    if r["rc"] != 0:
        raise RuntimeError(f"mlb-batch --streams {streams} failed (exit {r['rc']}): {r['stderr'].strip()[-300:]}")
    result = bi.mlb_batch_result(r["stderr"], f"mlb-batch --streams {streams}")
    result.update(peak_rss_mib=r["peak_rss_mib"], output=out.read_bytes())
    return result


def run_condition(condition: str, models: Dict[str, Path], data: Path, work: Path, repeats: int) -> Dict[str, Any]:
    """Medians per (file, streams) in one condition; the busy loop (if any) runs throughout."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if condition != "idle" else None
    try:
        out: Dict[str, Any] = {}
        for name, model in models.items():
            runs: Dict[int, List[Dict[str, Any]]] = {1: [], 2: []}
            reference: Optional[bytes] = None
            for rep in range(repeats):
                for streams in ((1, 2) if rep % 2 == 0 else (2, 1)):
                    r = run_mlb_batch(model, data, work / f"out-{name}-{streams}.jsonl", streams)
                    reference = reference if reference is not None else r["output"]
                    r["same_bytes"] = r.pop("output") == reference
                    c.log(f"streams {condition} {name} --streams {streams} {rep + 1}/{repeats}: "
                          f"{r['rows'] / r['seconds']:,.0f} rows/s")
                    runs[streams].append(r)
            out[name] = {streams: {"rows_per_s": rs[0]["rows"] / c.median([r["seconds"] for r in rs]),
                                   "rows_per_s_all": [r["rows"] / r["seconds"] for r in rs],
                                   "peak_rss_mib": c.median([r["peak_rss_mib"] for r in rs]),
                                   "same_bytes": all(r["same_bytes"] for r in rs)}
                         for streams, rs in runs.items()}
        return out
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def report(results: Dict[str, Any], rows: int, machine: Dict[str, Any], command: str) -> str:
    lines = [
        "# mlb-batch: one stream against two, on an idle and on a busy CPU\n",
        f"Written by `{command}`, finished {machine['date']}, on {c.machine_line(machine)}.\n",
        f"Input: GoEmotions test ({rows:,} rows), whole `mlb-batch` processes; rows/s from each run's summary line "
        "(read, tokenize, score, write), median of the runs, each run's figure in brackets. `--streams 1` is how "
        "mlb-batch ran before (one batch at a time, split across all the threads); `--streams 2` is the default "
        "now. \"one core busy\": a Python busy loop ran beside every run of that condition. Same bytes: every "
        "run's output equals the first `--streams 1` run's.\n",
    ]
    table = []
    for condition, by_file in results.items():
        for name, by_streams in by_file.items():
            one, two = by_streams[1], by_streams[2]
            table.append([condition, name,
                          f"{one['rows_per_s']:.0f} ({', '.join(f'{v:.0f}' for v in one['rows_per_s_all'])})",
                          f"{two['rows_per_s']:.0f} ({', '.join(f'{v:.0f}' for v in two['rows_per_s_all'])})",
                          f"{two['rows_per_s'] / one['rows_per_s']:.2f}x",
                          f"{one['peak_rss_mib']:.0f} / {two['peak_rss_mib']:.0f}",
                          "yes" if one["same_bytes"] and two["same_bytes"] else "NO"])
    lines.append(c.md_table(["condition", "file", "--streams 1 rows/s", "--streams 2 rows/s", "2 vs 1",
                             "peak RSS MiB (1 / 2)", "same bytes"], table))
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fp32", type=Path, required=True, help="fp32 file written by mlb-export")
    p.add_argument("--int8", type=Path, required=True, help="int8 file written by mlb-export --quantize int8")
    p.add_argument("--data", type=Path, default=c.DATA_DIR / "test.tsv.gz")
    p.add_argument("--work", type=Path, default=c.WORK_DIR / "streams")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--write-doc", action="store_true", help=f"write {DOC.relative_to(c.REPO)}")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = c.count_text_rows(args.data)
    data = c.make_input(args.data, rows, args.work)
    models = {"int8": args.int8, "fp32": args.fp32}
    results = {condition: run_condition(condition, models, data, args.work, args.repeats) for condition in CONDITIONS}
    shown = " ".join(["python benchmarks/bench_streams.py", *[c.shown_path(a) for a in (argv or sys.argv[1:])]])
    text = report(results, rows, c.machine_info(), shown)
    print(text)
    if args.write_doc:
        DOC.write_text(text, encoding="utf-8")
        c.log(f"wrote {c.shown_path(str(DOC))}")
    same = all(s["same_bytes"] for by_file in results.values() for by_streams in by_file.values()
               for s in by_streams.values())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
