"""Running the recipe studies' trainings: one mlb-train per (mode, data set, variant, seed), read back after.

Runs already finished (``metrics.json`` present) are kept and read back, so an
interrupted study continues where it stopped; ``rerun`` trains them again. ``lock`` runs
each training under ``flock FILE`` (one training per lock hold), so that other heavy jobs
on the machine take turns with it. Each run's seconds are recorded: mlb-train's own
(training, evaluations included; for a run with an intermediate task, both stages) and
the wall time of the process (``run.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import common as c
from recipe_variants import DATASETS, LEVERS, SEED_SOUP, SEED_SOUP_OFFSET, Flags, variant_flags

RUNS_DIR = c.REPO / "runs" / "recipe"
# confirm / levers-confirm: mlb-train's defaults as benchmarks/train_goemotions.sh runs them.
CONFIRM_EPOCHS = "6"
TIMING_STEPS = 200


def mode_flags(mode: str, dataset: str) -> List[str]:
    """What the mode adds to every variant's command (the protocol)."""
    if mode == "short":
        return ["--limit-train", "1500", "--max-steps", "60", "--limit-eval", "500"]
    if mode in ("full", "levers", "sweep"):
        return ["--epochs", str(DATASETS[dataset].screening_epochs), "--early-stopping-patience", "0"]
    if mode == "timing":
        return ["--max-steps", str(TIMING_STEPS), "--limit-eval", "64"]
    return ["--epochs", CONFIRM_EPOCHS]  # confirm, levers-confirm


def train_command(name: str, dataset: str, mode: str, seed: int, out: Path,
                  table: Dict[str, Flags] = LEVERS) -> List[str]:
    """The mlb-train command of one run: data, the mode's protocol, the variant's flags (they win), seed, output."""
    return ["mlb-train", *DATASETS[dataset].data_flags(), *mode_flags(mode, dataset),
            *variant_flags(name, dataset, mode, table), "--seed", str(seed),
            "-o", str(out.relative_to(c.REPO)), "--overwrite"]


def run_training(command: List[str], out: Path, lock: Optional[str]) -> Dict[str, Any]:
    """One mlb-train run (under ``flock lock`` if given), its log in OUT.log; returns its run record."""
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "mlbert.trainer", *command[1:]]
    if lock:
        argv = ["flock", lock, *argv]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(c.REPO))
    log_path = out.with_suffix(".log")
    load_before = os.getloadavg()[0]
    with open(log_path, "w", encoding="utf-8") as log:
        started = time.time()
        rc = subprocess.run(argv, cwd=str(c.REPO), env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"mlb-train failed ({rc}), see {log_path}: {' | '.join(tail)}")
    for folder in (out / "checkpoints", out / "intermediate" / "checkpoints"):
        shutil.rmtree(folder, ignore_errors=True)  # the kept models are in OUT; 0.5 GB less a run
    record = {"command": " ".join(command), "wall_s": round(time.time() - started, 1),
              "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def run_seconds(training: Dict[str, Any]) -> float:
    """What one model cost, all stages counted: both stages of an intermediate run, every run of a soup."""
    if "soup" in training:
        runs = training["soup"]["runs"]
        return sum(float(r.get("total_seconds") or r.get("train_seconds") or 0.0) for r in runs) + \
            float(training.get("total_seconds") or 0.0)
    return float(training.get("all_stages_seconds") or training.get("total_seconds") or training["train_seconds"])


def scores(out: Path) -> Dict[str, Any]:
    """The figures the studies compare, from a finished run's metrics.json."""
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    training = metrics["training"]
    row: Dict[str, Any] = {}
    for split in ("validation", "test"):
        by = metrics[split]["by_objective"]
        row[f"{split}_jaccard"] = by["jaccard"]["samples_jaccard"]
        row[f"{split}_micro_f1"] = by["jaccard"]["micro_f1"]
        row[f"{split}_macro_f1"] = by["label-f1"]["macro_f1"]
    epochs = float(training["epochs_run"] or 0.0) or 1.0
    row.update(train_seconds=training["train_seconds"], epochs_run=epochs,
               seconds_per_epoch=training["train_seconds"] / epochs, best_checkpoint=training["best_checkpoint"],
               run_seconds=round(run_seconds(training), 1))
    if "intermediate" in training:
        row["intermediate_seconds"] = training["intermediate"]["total_seconds"]
    if "checkpoint_average" in training:
        row["checkpoint_average_kept"] = training["checkpoint_average"]["kept"]
    return row


def run_folder(mode: str, ds_name: str, name: str, seed: int) -> Path:
    """Where one (dataset, variant, seed) run of a mode writes its model and metrics."""
    return RUNS_DIR / mode / ds_name / name / f"seed{seed}"


def run_one(mode: str, ds_name: str, name: str, seed: int, lock: Optional[str], rerun: bool,
            table: Dict[str, Flags] = LEVERS) -> Dict[str, Any]:
    """One (dataset, variant, seed) run: trained unless finished already; its row of figures."""
    out = run_folder(mode, ds_name, name, seed)
    if name == SEED_SOUP:
        command = seed_soup(mode, ds_name, seed, lock, rerun, table)
    else:
        command = train_command(name, ds_name, mode, seed, out, table)
    if rerun or not (out / "metrics.json").exists():
        c.log(f"{mode} {ds_name} {name} seed {seed}: {' '.join(command)}")
        run_training(command, out, lock)
    run_file = out / "run.json"
    record = json.loads(run_file.read_text(encoding="utf-8")) if run_file.exists() else {}
    row = {"dataset": ds_name, "variant": name, "seed": seed, **scores(out), **record}
    c.log(f"  val Jaccard {row['validation_jaccard']:.4f} macro-F1 {row['validation_macro_f1']:.4f}; "
          f"test Jaccard {row['test_jaccard']:.4f} macro-F1 {row['test_macro_f1']:.4f}; "
          f"{row['run_seconds']:.0f} s")
    return row


def seed_soup(mode: str, ds_name: str, seed: int, lock: Optional[str], rerun: bool,
              table: Dict[str, Flags]) -> List[str]:
    """The ``mlb-train --soup`` command of the seed soup at ``seed``, its two baseline runs trained first.

    The first ingredient is the study's own baseline run at ``seed`` (shared, not trained
    twice); the second, the baseline recipe at ``seed + SEED_SOUP_OFFSET``.
    """
    ingredients = [run_folder(mode, ds_name, "baseline", seed),
                   run_folder(mode, ds_name, SEED_SOUP, seed).parent / f"ingredient-seed{seed + SEED_SOUP_OFFSET}"]
    for folder, ingredient_seed in zip(ingredients, (seed, seed + SEED_SOUP_OFFSET)):
        if rerun or not (folder / "metrics.json").exists():
            command = train_command("baseline", ds_name, mode, ingredient_seed, folder, table)
            c.log(f"{mode} {ds_name} seed-soup ingredient seed {ingredient_seed}: {' '.join(command)}")
            run_training(command, folder, lock)
    out = run_folder(mode, ds_name, SEED_SOUP, seed)
    soup = [flag for folder in ingredients for flag in ("--soup", str(folder.relative_to(c.REPO)))]
    return ["mlb-train", *DATASETS[ds_name].data_flags(), *soup, "-o", str(out.relative_to(c.REPO)), "--overwrite"]
