"""Benchmark mlb-batch --engine ray against the local engine: cost of the Ray engine on one machine.

Why: the Ray engine exists to spread work over many machines; on one 2-core box it can
only add overhead (starting a local Ray instance, actor start-up and model load, shipping
texts through the object store). This measures that overhead, and checks on every run
that the Ray engine's output file is byte-identical to the local engine's.

\b
Usage:
    python benchmarks/bench_ray.py --model runs/bench-models/int8.onnx --rows 200 --rows 5000 --write-doc
    python benchmarks/bench_ray.py --make-models runs/bench-models --rows 5000     # packaged MiniLM, random head

Each run is one ``python -m mlbert.batch`` process (``bench_batch.run_once``): wall seconds from
start to exit, Ray start-up included; peak RSS is the driver process's only (Ray's raylet
and actor processes are not counted). Needs ``pip install 'mlbert[ray]'``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_batch as bb  # noqa: E402

REPO = bb.REPO
DOC = REPO / "docs" / "BENCHMARKS-ray.md"

# (name, extra mlb-batch options); each is compared with the last "local" run before it,
# which uses the same chunk size (int8 models quantize activations per batch, so the
# output is only defined byte for byte for a given chunking).
CONTENDERS = [
    ("local", []),
    ("ray, 1 actor x 2 threads", ["--engine", "ray", "--ray-concurrency", "1", "--threads", "2"]),
    # With the default 4096-row chunks a file of a few thousand rows is one chunk, which
    # one actor scores alone; smaller chunks give both actors work.
    ("ray, 2 actors x 1 thread", ["--engine", "ray", "--ray-concurrency", "2", "--threads", "1"]),
    ("local, 512-row chunks", ["--chunk-size", "512"]),
    ("ray, 2 actors x 1 thread, 512-row batches", ["--engine", "ray", "--ray-concurrency", "2", "--threads", "1",
                                                   "--ray-batch-size", "512"]),
]


def differing_records(a: bytes, b: bytes) -> int:
    left, right = a.splitlines(), b.splitlines()
    return sum(1 for x, y in zip(left, right) if x != y) + abs(len(left) - len(right))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="ONNX file written by mlb-export")
    parser.add_argument("--make-models", type=Path, metavar="DIR",
                        help="export the packaged MiniLM with a random head into DIR and use its int8 file")
    parser.add_argument("--data", type=Path, default=bb.DEFAULT_DATA, help="headerless TSV, text in column 1")
    parser.add_argument("--rows", type=int, action="append", metavar="N", help="input sizes (default 5000); repeatable")
    parser.add_argument("--write-doc", action="store_true", help=f"write {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)
    model = args.model
    if args.make_models:
        model = bb.make_models(args.make_models, args.data.parent / "emotions.txt")["int8"]
    if model is None:
        parser.error("give --model FILE.onnx or --make-models DIR")
    sizes = sorted(args.rows or [5000])

    results: List[Dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in sizes:
            data = bb.make_input(args.data, rows, folder)
            reference: Optional[bytes] = None
            base_seconds = None
            for name, extra in CONTENDERS:
                out = folder / f"out-{len(results)}.jsonl"
                r = bb.run_once(model, data, out, ["--device", "cpu", *extra])
                produced = out.read_bytes()
                if name.startswith("local"):
                    reference = produced
                if base_seconds is None:
                    base_seconds = r["seconds"]
                if produced != reference:  # keep the evidence
                    keep = REPO / "runs" / f"bench-ray-mismatch-{rows}-{len(results)}"
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / "reference.jsonl").write_bytes(reference)
                    (keep / "ray.jsonl").write_bytes(produced)
                    print(f"mismatch kept in {keep}", file=sys.stderr)
                r.update(engine=name, identical=produced == reference, vs_local=r["seconds"] / base_seconds,
                         differing=differing_records(produced, reference))
                results.append(r)
                print(f"{name:>26} {rows:>7} rows {r['seconds']:7.1f} s {r['rows_per_s']:7.0f} rows/s "
                      f"x{r['vs_local']:.2f} identical={r['identical']} differing={r['differing']}", file=sys.stderr, flush=True)

    table = ["| engine | rows | seconds | rows/s | time vs local | same bytes as local (same chunks) | driver peak RSS MiB | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        table.append(f"| {r['engine']} | {r['rows']} | {r['seconds']:.1f} | {r['rows_per_s']:.0f} | "
                     f"{r['vs_local']:.2f}x | {'yes' if r['identical'] else 'NO (%d records differ)' % r['differing']} | {r['peak_rss_mib']:.0f} | {r['load']:.1f} |")
    print("\n".join(table))
    if args.write_doc:
        import ray

        cpu = bb.cpu_model_name()
        cmd = "python benchmarks/bench_ray.py " + " ".join(argv if argv is not None else sys.argv[1:])
        DOC.write_text(
            "# mlb-batch: the Ray engine against the local engine on one machine\n\n"
            f"Written by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M')}.\n\n"
            f"Machine: {cpu}, {len(os.sched_getaffinity(0))} CPUs usable, Python {platform.python_version()}, "
            f"Ray {ray.__version__}, device cpu. Model: `{Path(model).name}` "
            f"({Path(model).stat().st_size / 1e6:.0f} MB). Input: GoEmotions `test.tsv` repeated to the row count.\n\n"
            "Each run is one `python -m mlbert.batch` process timed from start to exit; for the Ray engine that "
            "includes starting a local Ray instance, starting the actors and loading the model in each. "
            "`same bytes` compares the output file byte for byte with the local engine's run with the same "
            "chunk size. `time vs local` is against the local run with default options. Peak RSS is "
            "the driver's only (Ray's own processes are not counted). `load avg` above the CPU count means "
            "other work shared the CPUs.\n\n"
            + "\n".join(table) + "\n\n"
            "On one machine the Ray engine cannot be faster than the local engine, which already uses "
            "every core; what it costs here is the fixed start-up (the small file shows it) plus "
            "shipping texts and results through Ray's object store. Its use is many machines or GPUs: "
            "see [SCALE.md](SCALE.md).\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
