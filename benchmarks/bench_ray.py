"""Benchmark mlb-batch --engine ray against the local engine: wall time with Ray's start-up, and the steady rate.

Why: the Ray engine exists to spread work over machines; it pays only when the rows of a
file outweigh what Ray costs to start. This measures both parts on this machine, on one
Ray node (a local instance that mlb-batch starts itself, as with no --ray-address) and on
two nodes (a 2-node cluster on 127.0.0.1, one CPU each, started once beforehand like
`ray start --head` plus `ray start --address`), and checks on every run that the output
is byte-identical to the local engine's with the same chunking.

\b
Usage:
    python benchmarks/bench_ray.py --make-models runs/bench-models --rows 3000 --rows 30000 --write-doc
    python benchmarks/bench_ray.py --model model-int8.onnx --rows 30000

Each run is one ``python -m mlbert.batch`` process (``bench_batch.run_once``): ``wall`` is
from start to exit, so for the Ray engine it includes importing Ray, starting or joining
Ray, starting the actors and loading the model in each. ``steady rows/s`` is the run's own
summary (rows over the time from the first row read to the output published), so
``wall - run`` is the start-up. The 2-node cluster's own start is timed once and shown
apart. Needs ``pip install 'mlbert[ray]'``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_batch as bb  # noqa: E402
from common import machine_info  # noqa: E402

REPO = bb.REPO
DOC = REPO / "docs" / "BENCHMARKS-ray.md"
SUMMARY = re.compile(r"([\d.]+) s, (\d+) rows/s, ray \([^,]+, (\d+)-row batches(?:; (\d+) actors? scored rows)?")
LOCAL_SUMMARY = re.compile(r"([\d.]+) s, (\d+) rows/s")


def contenders(rows: int, address: str) -> List[Tuple[str, List[str]]]:
    """(name, mlb-batch options) in order; the Ray runs are compared with the local run of the same batches."""
    from mlbert.batch.ray.engine import default_batch_size

    batch = default_batch_size(rows, 2, 4096)
    return [
        ("local (default)", []),
        (f"local, {batch}-row chunks", ["--chunk-size", str(batch)]),
        ("ray, 1 node, 2 actors (mlb-batch starts Ray)", ["--engine", "ray", "--ray-concurrency", "2", "--threads", "1"]),
        ("ray, 2 nodes, 1 actor each (joined)", ["--engine", "ray", "--ray-address", address, "--threads", "1"]),
    ]


def start_two_nodes() -> Tuple[Any, float]:
    """A head and a worker node of 1 CPU each on 127.0.0.1; (cluster, seconds until both are up)."""
    from ray.cluster_utils import Cluster

    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster, time.perf_counter() - started


def measure(model: Path, data: Path, out: Path, name: str, extra: List[str]) -> Dict[str, Any]:
    r = bb.run_once(model, data, out, ["--device", "cpu", *extra])
    ray_summary = SUMMARY.search(r["summary"])
    local_summary = LOCAL_SUMMARY.search(r["summary"])
    if ray_summary:
        run_seconds, steady = float(ray_summary.group(1)), float(ray_summary.group(2))
        r.update(batch=int(ray_summary.group(3)), actors=int(ray_summary.group(4) or 0))
    else:
        run_seconds, steady = float(local_summary.group(1)), float(local_summary.group(2))
        chunk = extra[extra.index("--chunk-size") + 1] if "--chunk-size" in extra else "4096"
        r.update(batch=int(chunk), actors=None)
    r.update(engine=name, run_seconds=run_seconds, steady=steady, startup=r["seconds"] - run_seconds,
             output=out.read_bytes())
    return r


def run_size(model: Path, data: Path, rows: int, address: str, folder: Path) -> List[Dict[str, Any]]:
    results: List[Dict[str, Any]] = []
    for name, extra in contenders(rows, address):
        r = measure(model, data, folder / f"out-{rows}-{len(results)}.jsonl", name, extra)
        same_batches = [x for x in results if x["batch"] == r["batch"] and x["actors"] is None]
        reference = same_batches[-1]["output"] if same_batches else None
        r["identical"] = None if reference is None or r["actors"] is None else r["output"] == reference
        r["vs_local"] = r["seconds"] / results[0]["seconds"] if results else 1.0
        results.append(r)
        print(f"{name:>46} {rows:>7} rows  wall {r['seconds']:6.1f} s  start-up {r['startup']:5.1f} s  "
              f"steady {r['steady']:6.0f} rows/s  x{r['vs_local']:.2f}  identical={r['identical']}\n    {r['summary']}",
              file=sys.stderr, flush=True)
    for r in results:
        del r["output"]
    return results


def table(results: List[Dict[str, Any]]) -> str:
    lines = ["| engine | rows | rows per call | wall s | start-up s | steady rows/s | wall rows/s | wall vs local |"
             " same bytes as local with the same chunks | actors that scored | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        same = "-" if r["identical"] is None else "yes" if r["identical"] else "NO"
        lines.append(f"| {r['engine']} | {r['rows']} | {r['batch']} | {r['seconds']:.1f} | {r['startup']:.1f} | "
                     f"{r['steady']:.0f} | {r['rows_per_s']:.0f} | {r['vs_local']:.2f}x | {same} | "
                     f"{'-' if r['actors'] is None else r['actors']} | {r['load']:.1f} |")
    return "\n".join(lines)


def break_even_rows(start_ray: float, start_local: float, rate_ray: float, rate_local: float) -> Optional[float]:
    """Rows per file from which the Ray run's wall time is below the local engine's (None: never)."""
    gain = 1.0 / rate_local - 1.0 / rate_ray
    return max(0.0, (start_ray - start_local) / gain) if gain > 0 else None


def pays_table(results: List[Dict[str, Any]]) -> str:
    """Break-even rows per file and the wall time of 1M rows for 1-8 machines like this one.

    Arithmetic from the largest input's figures: a Ray node runs at the 1-node steady rate
    (all of this machine's cores), N nodes at N times that, after the measured start-up; the
    local engine at its steady rate after its start-up. It assumes the driver and the
    network keep up, which this one machine cannot show beyond its 2 actors.
    """
    largest = max(r["rows"] for r in results)
    local = next(r for r in results if r["rows"] == largest and r["engine"].startswith("local (default)"))
    own = next(r for r in results if r["rows"] == largest and r["engine"].startswith("ray, 1 node"))
    joined = next(r for r in results if r["rows"] == largest and r["engine"].startswith("ray, 2 nodes"))
    lines = ["| machines like this one | rows per file from which Ray pays, Ray started by mlb-batch | "
             "... joining a running cluster | 1M rows: Ray (joined) | 1M rows: local engine |",
             "|---|---|---|---|---|"]
    for nodes in (1, 2, 4, 8):
        rate = nodes * own["steady"]
        cells = []
        for start in (own["startup"], joined["startup"]):
            rows = break_even_rows(start, local["startup"], rate, local["steady"])
            cells.append("never" if rows is None else f"{rows:,.0f}")
        ray_1m = joined["startup"] + 1e6 / rate
        local_1m = local["startup"] + 1e6 / local["steady"]
        lines.append(f"| {nodes} | {cells[0]} | {cells[1]} | {ray_1m:,.0f} s | {local_1m:,.0f} s |")
    return "\n".join(lines)


def write_doc(text: str, argv: List[str], model: Path, cluster_seconds: float, pays: str) -> None:
    import ray

    m = machine_info()
    flags = ", ".join(f for f in ("avx512f", "avx512_vnni", "avx2", "fma") if m.get(f))
    DOC.write_text(
        "# mlb-batch: the Ray engine against the local engine, with Ray's start-up\n\n"
        f"Written by `python benchmarks/bench_ray.py {' '.join(argv)}` on {m['date']}.\n\n"
        f"Machine: {m['cpu']} ({flags}), {m['cores']} CPUs usable, Python {m['python']}, Ray {ray.__version__}, "
        f"device cpu. Model: `{model.name}` ({model.stat().st_size / 1e6:.0f} MB). Input: GoEmotions "
        "`test.tsv` repeated to the row count.\n\n"
        "Each run is one `python -m mlbert.batch` process. `wall` is from start to exit: for the Ray engine it "
        "includes importing Ray, starting (1 node) or joining (2 nodes) Ray, starting the actors and loading the "
        "model in each. `steady rows/s` is the run's own summary (first row read to output published); "
        "`start-up` is wall minus that run time (for the local engine: imports and model load). `rows per call` "
        "is the chunk (local) or the batch per actor call (Ray; sized from the file by default). `same bytes` "
        "compares the output file with the local engine's run with the same chunk size. The 2-node cluster "
        f"(two Ray nodes of 1 CPU each on 127.0.0.1) took {cluster_seconds:.1f} s to start, once, not counted in "
        "the rows below. `load avg` above the CPU count means other work shared the CPUs.\n\n"
        + text + "\n\n"
        "When the Ray engine pays: the rows per file from which a Ray run's wall time (start-up + rows / rate) "
        "is below the local engine's, for machines like this one. Arithmetic from the largest input above: "
        "each Ray node scores at the 1-node steady rate (this machine's cores as 1-thread actors), after the "
        "start-up measured above (mlb-batch starting Ray, or joining a running cluster); the local engine at "
        "its own steady rate and start-up. It assumes the driver (reading, writing) and the network keep up "
        "with N nodes, which one machine cannot show.\n\n"
        + pays + "\n",
        encoding="utf-8",
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="ONNX file written by mlb-export")
    parser.add_argument("--make-models", type=Path, metavar="DIR",
                        help="export the packaged MiniLM with a random head into DIR and use its int8 file")
    parser.add_argument("--data", type=Path, default=bb.DEFAULT_DATA, help="headerless TSV, text in column 1")
    parser.add_argument("--rows", type=int, action="append", metavar="N", help="input sizes (default 3000, 30000)")
    parser.add_argument("--write-doc", action="store_true", help=f"write {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)
    model = args.model
    if args.make_models:
        model = bb.make_models(args.make_models, args.data.parent / "emotions.txt")["int8"]
    if model is None:
        parser.error("give --model FILE.onnx or --make-models DIR")

    cluster, cluster_seconds = start_two_nodes()
    print(f"2-node cluster up in {cluster_seconds:.1f} s at {cluster.address}", file=sys.stderr, flush=True)
    results: List[Dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rows in sorted(args.rows or [3000, 30000]):
                data = bb.make_input(args.data, rows, Path(tmp))
                results += run_size(Path(model), data, rows, cluster.address, Path(tmp))
    finally:
        cluster.shutdown()
    text, pays = table(results), pays_table(results)
    print(text + "\n\n" + pays)
    if args.write_doc:
        write_doc(text, argv if argv is not None else sys.argv[1:], Path(model), cluster_seconds, pays)
    return 0 if all(r["identical"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
