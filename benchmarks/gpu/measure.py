"""The GPU check's measurements, one function per step: the data, training, export, mlb-batch,
exact scoring, the comparison with the CPU, and the transformers pipeline.

Each takes the run (``runner.Check``), runs the project's commands as a user would, and returns
the figures the results page shows; a failure is a ``StepError`` with one line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import machine
from runner import BATCH_SIZE, DATA, REPO, SUMMARY, Check, StepError, last_line


def nvidia_library_dirs() -> List[str]:
    """Folders of the CUDA libraries that pip's nvidia-* wheels put beside this Python's packages."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    found = set()
    for location in (spec.submodule_search_locations or []) if spec else []:
        found.update(str(p.parent) for p in Path(location).glob("*/lib/*.so*"))
    return sorted(found)


def cuda_provider(chk: Check) -> Dict[str, Any]:
    """onnxruntime's CUDA provider as installed (onnxruntime.preload_dlls finds the nvidia-* libraries); when it
    does not start that way, again with the libraries on LD_LIBRARY_PATH for the rest of the run, saying so."""
    model = str(REPO / "tests" / "fixtures" / "golden.onnx")
    try:
        return {"preloaded": True, **chk.worker("provider", model=model)}
    except StepError as exc:
        first = str(exc)
    dirs = nvidia_library_dirs()
    chk.env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    return {"preloaded": False, "preload_error": first, "ld_library_path": dirs, **chk.worker("provider", model=model)}


def make_data(chk: Check) -> Dict[str, Any]:
    """``--rows`` GoEmotions rows (train, dev, test, then again from the start) as JSON lines; texts and labels apart."""
    import numpy as np

    from mlbert.trainer.data import read_labelled_file

    names = (DATA / "emotions.txt").read_text(encoding="utf-8").split()
    parts = [read_labelled_file(str(DATA / f"{split}.tsv.gz"), label_names=names) for split in ("train", "dev", "test")]
    texts = [t for p in parts for t in p.texts]
    labels = np.concatenate([p.labels for p in parts])
    n = chk.settings.rows
    index = np.arange(n) % len(texts)
    with open(chk.work / "input.jsonl", "w", encoding="utf-8") as f:
        for i, j in enumerate(index):
            f.write(json.dumps({"id": f"r{i + 1}", "text": texts[j]}, ensure_ascii=False) + "\n")
    (chk.work / "texts.json").write_text(json.dumps([texts[j] for j in index], ensure_ascii=False), encoding="utf-8")
    np.save(chk.work / "labels.npy", labels[index])
    return {"rows": n, "distinct_texts": min(n, len(texts)), "labels": len(names),
            "mean_characters": round(float(np.mean([len(texts[j]) for j in index])), 1)}


# --------------------------------------------------------------------------- training


def train(chk: Check, device: str, folder: Path, steps: int, cpus: Optional[int] = None,
          limit_eval: Optional[int] = None) -> Dict[str, Any]:
    """``mlb-train`` on GoEmotions for ``steps`` steps on ``device``; its time per step and per epoch, its metrics.

    ``cpus`` pins the run to that many CPUs (affinity and thread count); ``limit_eval`` scores fewer
    validation and test rows (a probe of the step time only).
    """
    s = chk.settings
    limit_eval = limit_eval or s.limit_eval
    args: List[Any] = ["--train", DATA / "train.tsv.gz", "--validation", DATA / "dev.tsv.gz", "--test",
                       DATA / "test.tsv.gz", "--label-names", DATA / "emotions.txt", "--max-steps", steps,
                       "--device", device, "-o", folder, "--overwrite"]
    args += ["--base-model", chk.base_model] if chk.base_model else []
    args += ["--limit-train", s.limit_train] if s.limit_train else []
    args += ["--limit-eval", limit_eval] if limit_eval else []
    env = {"OMP_NUM_THREADS": str(cpus), "MKL_NUM_THREADS": str(cpus)} if cpus else None
    outcome = chk.cli("mlb-train", args, env=env, cpus=cpus)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    history = json.loads((folder / "history.json").read_text(encoding="utf-8"))
    return training_figures(metrics, history, outcome.seconds, cpus)


def training_figures(metrics: Dict[str, Any], history: List[Dict[str, Any]], wall: float,
                     cpus: Optional[int]) -> Dict[str, Any]:
    """Seconds per training step without the evaluations, and an epoch of GoEmotions at that pace."""
    t = metrics["training"]
    eval_seconds = sum(float(h.get("eval_runtime", 0.0)) for h in history)
    steps = max(1, int(t["global_step"]))
    step_seconds = max(0.0, float(t["train_seconds"]) - eval_seconds) / steps
    steps_per_epoch = math.ceil(int(t["train_rows"]) / BATCH_SIZE)

    def scores(split: str) -> Optional[Dict[str, float]]:
        tuned = metrics.get(split, {}).get("tuned")
        return {k: round(float(tuned[k]), 4) for k in ("samples_jaccard", "micro_f1", "macro_f1")} if tuned else None

    return {"device": t["device"], "precision": t["precision"], "cpus": cpus, "steps": steps,
            "train_rows": t["train_rows"], "train_seconds": t["train_seconds"], "eval_seconds": round(eval_seconds, 2),
            "step_seconds": round(step_seconds, 4), "steps_per_epoch": steps_per_epoch,
            "epoch_seconds": round(step_seconds * steps_per_epoch, 1), "wall_seconds": round(wall, 1),
            "train_loss": t.get("train_loss"), "validation": scores("validation"), "test": scores("test")}


# --------------------------------------------------------------------------- export and classification


def export(chk: Check, checkpoint: Path, target: Path, fp16: bool) -> Dict[str, Any]:
    """``mlb-export`` as a user runs it: fp32 checked exactly, fp16 (O4) through the accuracy gate on GoEmotions dev."""
    args: List[Any] = [checkpoint, target]
    if fp16:
        args += ["--optimize", "O4", "--validate-on", DATA / "dev.tsv.gz", "--validate-limit", chk.settings.validate_limit]
    outcome = chk.cli("mlb-export", args)
    return {"file": target.name, "megabytes": round(target.stat().st_size / 1e6, 1), "seconds": round(outcome.seconds, 1),
            "verification": [line for line in outcome.stdout.splitlines() if line.strip()][-6:]}


def classify(chk: Check, model: Path, device: str, name: str) -> Dict[str, Any]:
    """``mlb-batch`` over the whole input on ``device``: rows/s from its summary line, and the GPU's peak memory."""
    target = chk.work / f"{name}.jsonl"
    with machine.GpuMemory() as memory:
        outcome = chk.cli("mlb-batch", [chk.work / "input.jsonl", "-m", model, "--device", device, "--id-column", "id",
                                        "-o", target], ok=(0, 3))
    found = [SUMMARY.search(line) for line in outcome.stderr.splitlines()]
    match = next((m for m in reversed(found) if m), None)
    if match is None:
        raise StepError(f"mlb-batch wrote no summary line: {last_line(outcome.stderr)}")
    rows, errors, seconds = int(match.group(1)), int(match.group(2)), float(match.group(3))
    return {"model": model.name, "device": device, "provider": match.group(5), "rows": rows, "errors": errors,
            "seconds": seconds, "rows_per_second": round(rows / max(seconds, 1e-9)),
            "wall_seconds": round(outcome.seconds, 1), "gpu_peak_mib": memory.peak_mib}


def cuda_refusal(chk: Check, model: Path) -> Dict[str, Any]:
    """On a machine without a usable CUDA provider, ``--device cuda`` must fail with one line naming what is missing."""
    # Its own process even in-process: onnxruntime's reason is read from the process's stderr.
    outcome = chk.cli("mlb-batch", [chk.work / "input.jsonl", "-m", model, "--device", "cuda", "-o",
                                    chk.work / "refused.jsonl"], ok=(1, 2), own_process=True)
    message = [line for line in outcome.stderr.splitlines() if line.strip()]
    if len(message) != 1 or not message[0].startswith("Error:"):
        raise StepError(f"expected one 'Error:' line, got {len(message)} lines: {last_line(outcome.stderr)}")
    if (chk.work / "refused.jsonl").exists():
        raise StepError("mlb-batch --device cuda failed but left an output file")
    return {"exit_code": outcome.rc, "message": message[0]}


def score(chk: Check, model: Path, device: str, name: str, rows: int, tf32: bool = True) -> Dict[str, Any]:
    """Exact probabilities of the first ``rows`` texts through mlb's runtime (workers.scored)."""
    return chk.worker("scored", model=str(model), device=device, texts=str(chk.work / "texts.json"),
                      out=str(chk.work / f"{name}.npy"), limit=rows, tf32=tf32)


def batch_labels(path: Path, rows: int) -> List[Optional[List[str]]]:
    """The label lists of mlb-batch's first ``rows`` records (None for an error record)."""
    out: List[Optional[List[str]]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(out) >= rows:
                break
            record = json.loads(line)
            out.append(None if "error" in record else sorted(record["labels"]))
    return out


def agreement(chk: Check, checkpoint: Path) -> Dict[str, Any]:
    """CUDA against CPU: fp32 with the export's exact check (1e-4, same decisions), fp16 with its accuracy gate."""
    import numpy as np

    from mlbert.decisions import decide
    from mlbert.modelfile import CheckpointConfig
    from mlbert.exporter.validate import EXACT, LOSSY, compare

    config = CheckpointConfig.load(str(checkpoint))
    reference = np.load(chk.work / "cpu-fp32.npy")
    n = len(reference)
    y_true = np.load(chk.work / "labels.npy")[:n]
    source = f"the first {n} of the {chk.settings.rows} rows"
    out: Dict[str, Any] = {"rows": n}
    for name, kind in (("accel-fp32", EXACT), ("accel-fp32-no-tf32", EXACT), ("accel-fp16", LOSSY)):
        path = chk.work / f"{name}.npy"
        if path.exists():
            report = compare(reference, np.load(path)[:n], config.thresholds, kind=kind, variant=name, source=source,
                             y_true=y_true if kind == LOSSY else None)
            out[name] = {**report.to_dict(), "failures": report.failures, "drops": report.drops}
    expected = decide(reference, config.thresholds)
    cpu_labels = [sorted(config.label_names[j] for j in np.flatnonzero(row)) for row in expected]
    batch = batch_labels(chk.work / "batch-accel-fp32.jsonl", n)
    out["mlb_batch_fp32_rows_with_other_labels"] = sum(1 for a, b in zip(batch, cpu_labels) if a is not None and a != b)
    out["mlb_batch_fp32_error_rows"] = sum(1 for a in batch if a is None)
    return out


def pipeline_run(chk: Check, checkpoint: Path, batch_size: int) -> Dict[str, Any]:
    """The transformers pipeline (fp16 on the GPU) on the texts mlb-batch classified; agreement with mlb's fp16/fp32 file."""
    import numpy as np

    gpu = chk.settings.accelerator == "cuda"
    name = f"pipeline-{batch_size}"
    result = chk.worker("pipelined", checkpoint=str(checkpoint), texts=str(chk.work / "texts.json"),
                        out=str(chk.work / f"{name}.npy"), batch_size=batch_size, device=chk.settings.accelerator,
                        dtype="float16" if gpu else "float32", limit=chk.settings.pipeline_rows)
    mine = chk.work / ("accel-fp16.npy" if (chk.work / "accel-fp16.npy").exists() else "accel-fp32.npy")
    theirs, ours = np.load(chk.work / f"{name}.npy"), np.load(mine)
    n = min(len(theirs), len(ours))
    result["max_abs_diff_vs_mlb"] = float(np.abs(theirs[:n] - ours[:n]).max()) if n else None
    result["compared_with"] = f"{mine.stem} ({n} rows)"
    return result


