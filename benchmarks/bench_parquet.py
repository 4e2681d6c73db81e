"""Benchmark Parquet in mlb-batch: Parquet input against JSON lines input, and the Parquet output design.

Three tables, each measured side by side with its baseline in the same run:

1. End to end: ``python -m mlbert.batch`` on the same rows (GoEmotions test repeated, ``id``
   and ``text``) stored as JSON lines and as Parquet, JSON lines output; rounds alternate the
   two formats and the median is reported. The goal: Parquet input within 10% of JSON lines.
2. Reading alone (no model): rows/s of the readers (``open_table(...).rows()``) on both files.
3. Writing Parquet output (no model; synthetic 28-label probabilities in 4096-row chunks): the
   design mlb-batch uses (each chunk appended to the partial file as an Arrow IPC record batch,
   converted to Parquet when the run publishes) against per-chunk Parquet part files joined at
   publish, a single ParquetWriter (fast, but a killed run could not be resumed: a Parquet file
   has no footer until it is closed), and JSON lines records.

Usage:
    python benchmarks/bench_parquet.py --make-models runs/bench-models --write-doc
    python benchmarks/bench_parquet.py --model int8=model-int8.onnx --rows 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "BENCHMARKS-parquet.md"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, machine_info, read_tsv_texts  # noqa: E402

DEFAULT_DATA = DATA_DIR / "test.tsv.gz"
CHUNK = 4096


def write_inputs(texts: List[str], rows: int, folder: Path) -> Dict[str, Path]:
    """The same rows as JSON lines and as Parquet (row groups of 65,536 rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = [texts[i % len(texts)] for i in range(rows)]
    ids = [f"r{i}" for i in range(rows)]
    paths = {"jsonl": folder / f"in-{rows}.jsonl", "parquet": folder / f"in-{rows}.parquet"}
    with paths["jsonl"].open("w", encoding="utf-8") as f:
        for i, text in zip(ids, column):
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    pq.write_table(pa.table({"id": ids, "text": column}), paths["parquet"], row_group_size=65536)
    return paths


def run_cli(model: Path, data: Path, out: Path, threads: Optional[int]) -> Dict[str, Any]:
    """One mlb-batch process from start to exit."""
    cmd = [sys.executable, "-m", "mlbert.batch", str(data), "-m", str(model), "-o", str(out), "--device", "cpu"]
    if threads:
        cmd += ["--threads", str(threads)]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 3):
        raise SystemExit(f"mlb-batch failed ({proc.returncode}): {proc.stderr.strip()}")
    with out.open("rb") as f:
        rows = sum(1 for _ in f)
    return {"seconds": seconds, "rows": rows, "load": max(load, os.getloadavg()[0])}


def end_to_end(model: Path, inputs: Dict[str, Path], rounds: int, threads: Optional[int], folder: Path) -> List[Dict]:
    runs: Dict[str, List[Dict[str, Any]]] = {"jsonl": [], "parquet": []}
    outputs: Dict[str, bytes] = {}
    for r in range(rounds):
        order = ["jsonl", "parquet"] if r % 2 == 0 else ["parquet", "jsonl"]
        for fmt in order:
            out = folder / f"out-{fmt}.jsonl"
            result = run_cli(model, inputs[fmt], out, threads)
            runs[fmt].append(result)
            outputs[fmt] = out.read_bytes()
            print(f"  round {r + 1} {fmt:>7}: {result['seconds']:.1f} s, {result['rows'] / result['seconds']:.0f} rows/s",
                  file=sys.stderr, flush=True)
    base = statistics.median(x["seconds"] for x in runs["jsonl"])
    rows = []
    for fmt in ("jsonl", "parquet"):
        seconds = statistics.median(x["seconds"] for x in runs[fmt])
        rows.append({"input": fmt, "rows": runs[fmt][0]["rows"], "seconds": seconds,
                     "rows_per_s": runs[fmt][0]["rows"] / seconds, "vs_jsonl": seconds / base,
                     "all": [round(x["seconds"], 1) for x in runs[fmt]], "load": max(x["load"] for x in runs[fmt]),
                     "same_output": outputs[fmt] == outputs["jsonl"]})
    return rows


def best_of(repeats: int, job: Callable[[], Any]) -> float:
    """The fastest of ``repeats`` timings (in-process work: the least disturbed one)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return min(times)


def reading(inputs: Dict[str, Path], repeats: int) -> List[Dict[str, Any]]:
    from mlbert.io.readers import open_table

    def read(path: Path) -> Callable[[], int]:
        def job() -> int:
            with open_table(str(path)) as table:
                table.use_columns(["text", "id"])
                return sum(1 for _ in table.rows())
        return job

    rows = read(inputs["jsonl"])()
    out = []
    for fmt in ("jsonl", "parquet"):
        seconds = best_of(repeats, read(inputs[fmt]))
        out.append({"input": fmt, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds})
    return out


def synthetic_chunks(rows: int, labels: int) -> List[Any]:
    """Scored chunks as mlb-batch's writers get them: ids and skewed probabilities (few labels on)."""
    import numpy as np

    from mlbert.io.records import ChunkResult

    rng = np.random.default_rng(0)
    chunks = []
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        chunks.append(ChunkResult(list(range(start + 1, start + n + 1)), [(f"r{i}",) for i in range(start, start + n)],
                                  [None] * n, rng.random((n, labels), dtype=np.float32) ** 4))
    return chunks


def writing(rows: int, labels: int, folder: Path, repeats: int) -> List[Dict[str, Any]]:
    """Output-side cost of each way to write Parquet (and JSON lines), same chunks, no model."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlbert.io.parquet_output import ParquetRecords, write_parquet
    from mlbert.io.records import RecordFormatter

    names = [f"label_{j}" for j in range(labels)]
    thresholds = np.full(labels, 0.5)
    chunks = synthetic_chunks(rows, labels)
    parquet = ParquetRecords(["id"], names, thresholds)

    def journal_then_convert() -> None:
        with open(folder / "journal", "wb") as f:
            f.write(parquet.header())
            for chunk in chunks:
                f.write(parquet.format_chunk(chunk))
                f.flush()
                os.fsync(f.fileno())
        write_parquet(str(folder / "journal"), str(folder / "a.parquet"))

    def parts_then_join() -> None:
        parts = []
        for i, chunk in enumerate(chunks):
            batch = pa.ipc.open_stream(parquet.header() + parquet.format_chunk(chunk)).read_next_batch()
            part = folder / f"part-{i}.parquet"
            pq.write_table(pa.Table.from_batches([batch]), part)
            parts.append(part)
        with pq.ParquetWriter(folder / "b.parquet", parquet.schema) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part))

    def one_writer() -> None:
        with pq.ParquetWriter(folder / "c.parquet", parquet.schema) as writer:
            for chunk in chunks:
                batch = pa.ipc.open_stream(parquet.header() + parquet.format_chunk(chunk)).read_next_batch()
                writer.write_batch(batch)

    def jsonl() -> None:
        formatter = RecordFormatter("jsonl", ["id"], names, thresholds)
        with open(folder / "d.jsonl", "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(formatter.format_chunk(chunk))

    designs = [
        ("IPC journal per chunk, converted to Parquet at publish (mlb-batch)", journal_then_convert, "a.parquet", True),
        ("a Parquet part file per chunk, joined at publish", parts_then_join, "b.parquet", True),
        ("one ParquetWriter, a row group per chunk", one_writer, "c.parquet", False),
        ("JSON lines records (for reference)", jsonl, "d.jsonl", True),
    ]
    out = []
    for name, job, target, resumable in designs:
        seconds = best_of(repeats, job)
        out.append({"design": name, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
                    "mb": (folder / target).stat().st_size / 1e6, "resumable": resumable})
    return out


def tables(e2e: List[Dict], read: List[Dict], write: List[Dict]) -> str:
    lines = ["| input | rows | seconds (median) | rows/s | time vs JSON lines | all rounds, s | same output | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for r in e2e:
        lines.append(f"| {r['input']} | {r['rows']} | {r['seconds']:.1f} | {r['rows_per_s']:.0f} | {r['vs_jsonl']:.3f}x "
                     f"| {', '.join(map(str, r['all']))} | {'yes' if r['same_output'] else 'NO'} | {r['load']:.1f} |")
    lines += ["", "| reader | rows | seconds (best) | rows/s |", "|---|---|---|---|"]
    for r in read:
        lines.append(f"| {r['input']} | {r['rows']} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} |")
    lines += ["", "| writing the output | rows | seconds (best) | rows/s | MB | resumable |", "|---|---|---|---|---|---|"]
    for r in write:
        lines.append(f"| {r['design']} | {r['rows']} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | {r['mb']:.1f} "
                     f"| {'yes' if r['resumable'] else 'no'} |")
    return "\n".join(lines)


def verdict(e2e: List[Dict], write: List[Dict]) -> str:
    """What the tables say, computed from them."""
    parquet = next(r for r in e2e if r["input"] == "parquet")
    journal, parts, single = write[0]["seconds"], write[1]["seconds"], write[2]["seconds"]
    within = "within" if abs(parquet["vs_jsonl"] - 1) <= 0.10 else "NOT within"
    return (f"Parquet input took {parquet['vs_jsonl']:.3f}x the JSON lines input's time end to end: {within} the "
            f"10% goal. Writing Parquet output through the IPC journal took {journal / single:.2f}x the time of a "
            f"single ParquetWriter (which could not be resumed) and {journal / parts:.2f}x that of part files "
            "joined at publish; mlb-batch uses the journal.")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", metavar="NAME=FILE.onnx", help="the model for the end-to-end runs")
    parser.add_argument("--make-models", type=Path, metavar="DIR",
                        help="export the packaged MiniLM (random 28-label head) fp32 and int8 into DIR; time int8")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="headerless TSV, text in column 1")
    parser.add_argument("--rows", type=int, default=10_000, help="rows for the end-to-end runs (default 10000)")
    parser.add_argument("--read-rows", type=int, default=200_000, help="rows for the reading table (default 200000)")
    parser.add_argument("--write-rows", type=int, default=200_000, help="rows for the writing table (default 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds per format (default 3)")
    parser.add_argument("--threads", type=int, help="passed to mlb-batch --threads")
    parser.add_argument("--write-doc", action="store_true", help=f"write {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)

    if args.make_models:
        from bench_batch import make_models

        existing = args.make_models / "minilm-int8.onnx"
        model = existing if existing.exists() else make_models(args.make_models, args.data.parent / "emotions.txt")["int8"]
    elif args.model:
        model = Path(args.model.rpartition("=")[2])
    else:
        parser.error("give --model NAME=FILE.onnx or --make-models DIR")
    machine = machine_info()
    texts = read_tsv_texts(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("end to end", file=sys.stderr, flush=True)
        e2e = end_to_end(model, write_inputs(texts, args.rows, folder), args.rounds, args.threads, folder)
        print("reading", file=sys.stderr, flush=True)
        read = reading(write_inputs(texts, args.read_rows, folder), repeats=3)
        print("writing", file=sys.stderr, flush=True)
        write = writing(args.write_rows, 28, folder, repeats=3)
    table = tables(e2e, read, write)
    print(table)
    if args.write_doc:
        flags = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni") if machine.get(f)]
        cmd = "python benchmarks/bench_parquet.py " + " ".join(argv if argv is not None else sys.argv[1:])
        DOC.write_text(
            "# mlb-batch: Parquet input and output\n\n"
            f"Written by `{cmd}` on {machine['date']}.\n\n"
            f"Machine: {machine['cpu']} ({', '.join(flags)}), {machine['cores']} CPUs usable, "
            f"{machine['mem_gib']:.0f} GiB, Python {platform.python_version()}, "
            f"onnxruntime {machine['versions'].get('onnxruntime-gpu') or machine['versions'].get('onnxruntime')}, "
            f"pyarrow {__import__('pyarrow').__version__}. Model: `{model.name}` ({model.stat().st_size / 1e6:.0f} MB; "
            "the packaged all-MiniLM-L6-v2 with a random 28-label head, dynamic int8: the fastest model, so the "
            "reading cost weighs most). Input: GoEmotions `test.tsv` repeated to the row count, as `id` and "
            "`text`, in JSON lines and in Parquet (row groups of 65,536 rows).\n\n"
            "End to end, each run is one `python -m mlbert.batch IN -o OUT.jsonl --device cpu` process from start "
            "to exit; rounds alternate the formats and the median is shown. `same output` compares the output "
            "bytes with the JSON lines input's. `load avg` above the CPU count means other work shared the CPUs. "
            "The reading and writing tables are in-process and show the best of 3 runs.\n\n"
            + table + "\n\n" + verdict(e2e, write) + "\n",
            encoding="utf-8")
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
