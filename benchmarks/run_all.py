"""The benchmark suite's one entry command: inference, distance to the limit, accuracy, training cost.

Writes docs/BENCHMARKS.md (tables, machine, versions, exact command, date) and
docs/img/bench_*.png; prints the tables on stdout and progress on stderr; keeps the raw
numbers in WORK/results.json (``--from-json`` re-renders the document from them).

\b
Full run (the numbers in docs/BENCHMARKS.md; about 25-30 minutes on 2 quiet cores):
    .venv/bin/python benchmarks/run_all.py --checkpoint runs/goemotions

\b
With ONNX files already exported (skips the export, ~2 minutes):
    .venv/bin/python benchmarks/run_all.py --checkpoint runs/goemotions \\
        --fp32 runs/goemotions-export/model-none.onnx --int8 runs/goemotions-export/model-int8.onnx

\b
Quick smoke run (500 rows, 1 repeat, no 100k file, small training; writes WORK/BENCHMARKS-quick.md;
without --checkpoint it makes the packaged base model with a random 28-label head and skips accuracy):
    .venv/bin/python benchmarks/run_all.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402
from flops import cpu_peaks  # noqa: E402
import benchmarks_doc  # noqa: E402

DOC = benchmarks_doc.DOC
IMG = c.REPO / "docs" / "img"
PARTS = ("inference", "int8", "accuracy", "training", "ray")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1].replace("\\b\n", ""))
    p.add_argument("--checkpoint", type=Path, help="trained mlb-train output folder (default: runs/goemotions if "
                   "it holds a model; --quick without one uses a random head)")
    p.add_argument("--fp32", type=Path, help="fp32 ONNX from mlb-export (default: export into WORK/models)")
    p.add_argument("--int8", type=Path, help="int8 ONNX from mlb-export --quantize int8 (default: export into WORK/models)")
    p.add_argument("--work", type=Path, default=c.WORK_DIR,
                   help="scratch folder: inputs, outputs, exported models, training runs [default: %(default)s]")
    p.add_argument("--data", type=Path, default=c.DATA_DIR, help="GoEmotions folder [default: %(default)s]")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repeat; does not touch docs/")
    p.add_argument("--skip", action="append", default=[], choices=PARTS, help="leave a part out (repeatable)")
    p.add_argument("--repeats", type=int, help="runs per contender on the test file [3; quick 1]")
    p.add_argument("--rows", type=int, help="rows of the test file to use [all 5,427; quick 500]")
    p.add_argument("--recipe-rows", type=int, help="the recipe runs on the first N rows [2000; quick: --rows]")
    p.add_argument("--big-rows", type=int, help="the repeated file's size, 0 to skip [100000; quick 0]")
    p.add_argument("--big-repeats", type=int, default=1, help="runs per contender on the big file [%(default)s]")
    p.add_argument("--train-rows", type=int, help="training sample [2000; quick 200]")
    p.add_argument("--epochs", type=float, default=3.0, help="training-cost epochs for both setups [%(default)s; at 1 epoch on 2,000 rows neither learns enough to compare]")
    p.add_argument("--eval-rows", type=int, help="validation/test rows for the training comparison [1000; quick 200]")
    p.add_argument("--accuracy-rows", type=int, help="test rows for the accuracy section [all; quick 500]")
    p.add_argument("--doc", type=Path, help="where to write the Markdown [docs/BENCHMARKS.md; quick WORK/BENCHMARKS-quick.md]")
    p.add_argument("--update", action="store_true",
                   help="rerun only the parts not skipped and merge them into WORK/results.json (the rest is kept)")
    p.add_argument("--from-json", type=Path, help="re-render the document from a results.json; run nothing")
    a = p.parse_args(argv)
    q = a.quick
    a.repeats = a.repeats or (1 if q else 3)
    a.rows = a.rows or (500 if q else None)
    a.recipe_rows = a.recipe_rows or (a.rows if q else 2000)
    a.big_rows = (0 if q else 100_000) if a.big_rows is None else a.big_rows
    a.train_rows = a.train_rows or (200 if q else 2000)
    a.eval_rows = a.eval_rows or (200 if q else 1000)
    a.accuracy_rows = a.accuracy_rows or (500 if q else None)
    a.doc = a.doc or (a.work / "BENCHMARKS-quick.md" if q else DOC)
    return a


def resolve_models(a: argparse.Namespace) -> Dict[str, Any]:
    """The checkpoint and its two ONNX files; ``trained`` is False for the random-head stand-in."""
    checkpoint = a.checkpoint
    default = c.REPO / "runs" / "goemotions"
    if checkpoint is None and (default / "model.safetensors").exists() and (default / "mlb.json").exists():
        checkpoint = default
    trained = True
    if checkpoint is None:
        if not a.quick:
            raise SystemExit("benchmarks: --checkpoint is required (train one with benchmarks/train_goemotions.sh), "
                             "or use --quick")
        c.log("no trained checkpoint: the packaged base model with a random 28-label head (speed only)")
        checkpoint = c.make_random_checkpoint(a.work / "models" / "random-checkpoint", c.label_names(a.data))
        trained = False
    if not (checkpoint / "config.json").exists():
        raise SystemExit(f"benchmarks: {checkpoint} is not a checkpoint folder (no config.json)")
    stem = "random" if not trained else checkpoint.resolve().name
    fp32 = a.fp32 or c.export_onnx(checkpoint, a.work / "models" / f"{stem}-fp32.onnx", "none")
    int8 = a.int8 or c.export_onnx(checkpoint, a.work / "models" / f"{stem}-int8.onnx", "int8")
    return {"checkpoint": checkpoint, "fp32": fp32, "int8": int8, "trained": trained}


def attainable_fp32() -> Optional[float]:
    """fp32 GEMM rate torch reaches on this machine (1024^3 matmuls for ~2 s), a measured yardstick."""
    code = ("import time,torch;from mlbert.runtime.cpus import available_cpus;torch.set_num_threads(available_cpus());"
            "a=torch.randn(1024,1024);b=torch.randn(1024,1024);[a@b for _ in range(3)];n=0;t=time.perf_counter()\n"
            "while time.perf_counter()-t<2: a@b; n+=1\n"
            "print(2*1024**3*n/(time.perf_counter()-t))")
    r = c.run_child([sys.executable, "-c", code], timeout=120)
    try:
        return float(r["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def start_results(a: argparse.Namespace, command: str, machine: Dict[str, Any]) -> Dict[str, Any]:
    """A new run's results, or (``--update``) the previous run's with the parts to rerun taken out."""
    if not a.update:
        return {"command": command, "quick": a.quick, "machine": machine, "peaks": cpu_peaks(machine),
                "load_start": list(os.getloadavg()), "previous_elapsed_s": 0.0}
    results = json.loads((a.work / "results.json").read_text(encoding="utf-8"))
    rerun = [part for part in PARTS if part not in a.skip]
    results.setdefault("updates", []).append({"command": command, "parts": rerun, "date": machine["date"]})
    for part in rerun:
        results.pop(part, None)
    results["previous_elapsed_s"] = results.get("elapsed_s", 0.0)
    return results


def describe_models(models: Dict[str, Any]) -> Dict[str, Any]:
    """What the document says of the models: paths, sizes, the int8 file's scheme."""
    described = {k: (str(v) if isinstance(v, Path) else v) for k, v in models.items()}
    described["fp32_mb"] = models["fp32"].stat().st_size / 1e6
    described["int8_mb"] = models["int8"].stat().st_size / 1e6
    quantization = c.read_header(models["int8"]).quantization
    described["int8_scheme"] = (f"`{quantization.get('config', '?')}` ({quantization.get('weights_dtype', '?')} "
                                f"weights{', 7-bit' if quantization.get('reduce_range') else ''}"
                                f"{', per-channel' if quantization.get('per_channel') else ''}"
                                f"{', fused' if quantization.get('fused') else ''})")
    return described


def run_parts(a: argparse.Namespace, models: Dict[str, Any], results: Dict[str, Any]) -> None:
    """Each part not skipped, in turn (never two at once: they time the same two cores)."""
    if "inference" not in a.skip:
        import bench_inference
        import inference_report

        results["inference"] = bench_inference.run_inference(
            models["checkpoint"], models["fp32"], models["int8"], a.work / "inference", rows=a.rows,
            big_rows=a.big_rows or None, repeats=a.repeats, big_repeats=a.big_repeats,
            contenders=list(bench_inference.CONTENDERS), data=a.data / "test.tsv.gz", recipe_rows=a.recipe_rows)
        print(inference_report.report(results["inference"], results["peaks"]), flush=True)
    if "accuracy" not in a.skip and models["trained"]:
        import bench_accuracy

        results["accuracy"] = bench_accuracy.run_accuracy(models["checkpoint"], models["fp32"], models["int8"],
                                                          data=a.data / "test.tsv.gz", limit=a.accuracy_rows)
        print(bench_accuracy.report(results["accuracy"]), flush=True)
    if "int8" not in a.skip:
        import bench_int8

        results["int8"] = bench_int8.run_int8(models["checkpoint"], models["fp32"], a.work / "int8", data_dir=a.data,
                                              repeats=a.repeats, trained=models["trained"], rows=a.rows)
        print(bench_int8.report(results["int8"]), flush=True)
    if "training" not in a.skip:
        import bench_training

        results["training"] = bench_training.run_training(a.work / "training", train_rows=a.train_rows,
                                                          epochs=a.epochs, eval_rows=a.eval_rows, data=a.data)
        print(bench_training.report(results["training"]), flush=True)
    if "ray" not in a.skip and not a.quick:
        # The Ray engine against the local engine (issue 7): its own script, as a child, on the int8 file.
        # Its table goes into this document only: docs/BENCHMARKS-ray.md is bench_ray's own, longer run.
        c.log("ray engine vs local engine (benchmarks/bench_ray.py)")
        ray_run = c.run_child([sys.executable, str(c.REPO / "benchmarks" / "bench_ray.py"), "--model", str(models["int8"]),
                               "--rows", "3000"], timeout=1200)
        results["ray"] = {"command": f"python benchmarks/bench_ray.py --model {c.shown_path(models['int8'])} --rows 3000",
                          "table": ray_run["stdout"].strip(), "returncode": ray_run["rc"]}


def finish(a: argparse.Namespace, results: Dict[str, Any], seconds: float) -> None:
    """Times, gap notes and plots into the results; results.json, the document and the targets table written."""
    results["load_end"] = list(os.getloadavg())
    if a.update:
        results["elapsed_s"] = results.pop("previous_elapsed_s")
        results["updates"][-1]["elapsed_s"] = seconds
    else:
        results.pop("previous_elapsed_s", None)
        results["elapsed_s"] = seconds
    results["gaps"] = benchmarks_doc.gap_notes(results)
    if "inference" in results and not (a.update and "inference" in a.skip):
        import inference_report

        img = IMG if a.doc == DOC else a.doc.parent / "img"
        kind = results["machine"].get("int8_path", "unknown")
        results["plots"] = [str(p) for p in inference_report.plot(results["inference"], img, suffix="-" + kind)]
    (a.work / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    benchmarks_doc.write_doc(results, a.doc)
    print("\n" + c.md_table(["target", "measured", "status"], benchmarks_doc.target_rows(results)))
    c.log(f"wrote {a.doc} and {a.work / 'results.json'} in {results['elapsed_s'] / 60:.1f} min")


def main(argv: Optional[List[str]] = None) -> int:
    a = parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else argv
    if a.from_json:
        results = json.loads(a.from_json.read_text(encoding="utf-8"))
        results["gaps"] = benchmarks_doc.gap_notes(results)
        print(benchmarks_doc.write_doc(results, a.doc))
        return 0
    started = time.monotonic()
    a.work.mkdir(parents=True, exist_ok=True)
    machine = c.machine_info()
    command = ".venv/bin/python benchmarks/run_all.py " + " ".join(shlex.quote(x) for x in argv_used)
    results = start_results(a, command, machine)
    c.log(f"work folder {a.work}; load average {os.getloadavg()[0]:.2f}")
    models = resolve_models(a)
    results["models"] = describe_models(models)
    if not a.update or "attainable_fp32" not in results:
        results["attainable_fp32"] = attainable_fp32()
    run_parts(a, models, results)
    finish(a, results, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
