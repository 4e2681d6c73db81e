"""The recipe study: each candidate training change against today's defaults, on GoEmotions and XED English.

Every variant is one ``mlb-train`` run per dataset and seed, on the data shipped in
``data/`` (GoEmotions' official split; XED English's fixed seeded split), the same
protocol for all; each differs from the baseline only by its flags (``VARIANTS``).
Thresholds are tuned and the best checkpoint picked on validation only; the test split is
scored once per run. The script prints the tables and writes them into docs/RECIPE.md
between this mode's markers (the prose around them is edited by hand).

Modes:

* ``short``: a quick look (seconds to minutes per run): 1,500 training rows, 60 steps,
  the first 500 validation and test rows, one seed. Not for conclusions.
* ``full``: the screening protocol of docs/RECIPE.md: whole splits, a fixed number of
  epochs per dataset (``DATASETS``), no early stopping, seeds 42 and 43; staged: XED
  English first, and only the variants that beat the baseline on both its seeds go on to
  GoEmotions (``--every-run``: all of them).
* ``lengths``: no training: tokens per training row with and without the label names
  prepended (SpanEmo's input), what that idea would cost per epoch.
* ``timing``: the time per step of each variant, 200 steps on GoEmotions, two rounds that
  alternate the variants, so that a busy moment of the machine does not favour one.
* ``confirm``: mlb-train's defaults as ``benchmarks/train_goemotions.sh`` runs them (up to 6
  epochs, early stopping), for the variants named with ``--variants``, on GoEmotions.

Runs already finished (``metrics.json`` present) are kept and read back, so an interrupted
study continues where it stopped; ``--rerun`` trains them again. ``--lock FILE`` runs each
training under ``flock FILE`` (one training per lock hold) so that other heavy jobs on the
machine can take turns without overlapping.

    python benchmarks/bench_recipe.py --mode short
    python benchmarks/bench_recipe.py --mode full --lock /tmp/mlb-heavy.lock
    python benchmarks/bench_recipe.py --mode confirm --variants baseline,ema
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402


@dataclass(frozen=True)
class Dataset:
    """A shipped dataset and the fixed epochs of the screening protocol on it."""

    folder: str
    first_label_id: int
    screening_epochs: int


DATASETS = {
    # 439 steps an epoch, 3 epochs: 1,317 steps (about half of GoEmotions' 2,714 for a third of the rows).
    "xed-en": Dataset("data/xed-en", 1, 3),
    # 1,357 steps an epoch; one epoch, what 2 shared CPU cores allow for 10 runs (docs/RECIPE.md).
    "goemotions": Dataset("data/goemotions", 0, 1),
}

# Each candidate: the flags it adds to mlb-train's defaults, and the source it comes from.
VARIANTS: Dict[str, List[str]] = {
    "baseline": [],
    # Ridnik et al. 2021, their defaults for multi-label: gamma- 4, gamma+ 1, clip 0.05.
    "asl": ["--loss", "asl", "--asl-gamma-neg", "4", "--asl-gamma-pos", "1", "--asl-clip", "0.05"],
    # SpanEmo (Alhuzali and Ananiadou 2021): 0.8 BCE + 0.2 label-correlation term.
    "lca": ["--lca-weight", "0.2"],
    # Layer-wise decay 0.8 around today's rate: head 2e-4, middle layer ~1e-4, embeddings 4.2e-5.
    "llrd": ["--layer-lr-decay", "0.8", "--lr", "2e-4"],
    # An EMA of the weights, evaluated and saved instead of the last step's.
    "ema": ["--ema-decay", "0.999"],
}

SEEDS = {"short": (42,), "full": (42, 43), "confirm": (42,), "timing": (42, 43)}
# timing: every variant this many steps, in two alternating rounds (the seeds), one dataset.
TIMING_STEPS = 200
RUNS_DIR = c.REPO / "runs" / "recipe"
DOC = c.REPO / "docs" / "RECIPE.md"


# --------------------------------------------------------------------------- running


def mode_flags(mode: str, dataset: Dataset) -> List[str]:
    """What the mode adds to every variant's command (the protocol)."""
    if mode == "short":
        return ["--limit-train", "1500", "--max-steps", "60", "--limit-eval", "500"]
    if mode == "full":
        return ["--epochs", str(dataset.screening_epochs), "--early-stopping-patience", "0"]
    if mode == "timing":
        return ["--max-steps", str(TIMING_STEPS), "--limit-eval", "64"]
    return ["--epochs", "6"]  # confirm: as benchmarks/train_goemotions.sh


def train_command(name: str, dataset: Dataset, variant: List[str], mode: str, seed: int, out: Path) -> List[str]:
    data = Path(dataset.folder)
    return [
        "mlb-train",
        "--train", str(data / "train.tsv.gz"), "--validation", str(data / "dev.tsv.gz"),
        "--test", str(data / "test.tsv.gz"), "--label-names", str(data / "emotions.txt"),
        "--first-label-id", str(dataset.first_label_id),
        *mode_flags(mode, dataset), *variant, "--seed", str(seed),
        "-o", str(out.relative_to(c.REPO)), "--overwrite",
    ]


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
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the kept model is in OUT; 0.5 GB less a run
    record = {"command": " ".join(command), "wall_s": round(time.time() - started, 1),
              "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def scores(out: Path) -> Dict[str, Any]:
    """The figures the study compares, from a finished run's metrics.json."""
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    training = metrics["training"]
    row: Dict[str, Any] = {}
    for split in ("validation", "test"):
        by = metrics[split]["by_objective"]
        row[f"{split}_jaccard"] = by["jaccard"]["samples_jaccard"]
        row[f"{split}_micro_f1"] = by["jaccard"]["micro_f1"]
        row[f"{split}_macro_f1"] = by["label-f1"]["macro_f1"]
    epochs = float(training["epochs_run"]) or 1.0
    row.update(train_seconds=training["train_seconds"], epochs_run=epochs,
               seconds_per_epoch=training["train_seconds"] / epochs, best_checkpoint=training["best_checkpoint"])
    return row


def run_folder(mode: str, ds_name: str, name: str, seed: int) -> Path:
    """Where one (dataset, variant, seed) run of a mode writes its model and metrics."""
    return RUNS_DIR / mode / ds_name / name / f"seed{seed}"


def run_one(mode: str, ds_name: str, name: str, seed: int, lock: Optional[str], rerun: bool) -> Dict[str, Any]:
    """One (dataset, variant, seed) run: trained unless finished already; its row of figures."""
    out = run_folder(mode, ds_name, name, seed)
    command = train_command(name, DATASETS[ds_name], VARIANTS[name], mode, seed, out)
    if rerun or not (out / "metrics.json").exists():
        c.log(f"{mode} {ds_name} {name} seed {seed}: {' '.join(command)}")
        run_training(command, out, lock)
    run_file = out / "run.json"
    record = json.loads(run_file.read_text(encoding="utf-8")) if run_file.exists() else {}
    row = {"dataset": ds_name, "variant": name, "seed": seed, **scores(out), **record}
    c.log(f"  val Jaccard {row['validation_jaccard']:.4f} macro-F1 {row['validation_macro_f1']:.4f}; "
          f"test Jaccard {row['test_jaccard']:.4f} macro-F1 {row['test_macro_f1']:.4f}; "
          f"{row['seconds_per_epoch']:.0f} s/epoch")
    return row


def run_study(mode: str, datasets: Sequence[str], variants: Sequence[str], lock: Optional[str],
              rerun: bool, every_run: bool = False) -> List[Dict[str, Any]]:
    """Every (dataset, seed, variant) run of the mode, datasets in ``DATASETS`` order.

    Screening is staged (``full``, unless ``every_run``): a variant that does not beat the
    baseline on every seed of a dataset cannot meet the adoption rule whatever it does on
    the next one, so it is not trained on the next one (its finished runs are still read).
    XED English comes first: a third of GoEmotions' training steps.
    """
    results: List[Dict[str, Any]] = []
    alive = list(variants)
    for ds_name in [d for d in DATASETS if d in datasets]:
        for seed in SEEDS[mode]:
            for name in variants:
                done = (run_folder(mode, ds_name, name, seed) / "metrics.json").exists()
                if name in alive or done:
                    results.append(run_one(mode, ds_name, name, seed, lock, rerun and name in alive))
        if mode == "full" and not every_run and "baseline" in variants:
            judged = verdicts([r for r in results if r["dataset"] == ds_name])
            alive = ["baseline"] + [n for n in alive if n != "baseline" and all(
                g > 0 for g in judged.get(n, {}).get(ds_name, {"gains": [0.0]})["gains"])]
    return results


# --------------------------------------------------------------------------- the tables


def selection_score(row: Dict[str, Any]) -> float:
    """What adoption compares (validation only): the mean of samples-Jaccard and macro-F1 at their thresholds."""
    return (row["validation_jaccard"] + row["validation_macro_f1"]) / 2.0


def mean_spread(values: Sequence[float]) -> str:
    """``mean ± half range`` (two seeds: the half distance between them)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def verdicts(results: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per variant and dataset: whether it beat the baseline's selection score on every seed."""
    base = {(r["dataset"], r["seed"]): r for r in results if r["variant"] == "baseline"}
    out: Dict[str, Dict[str, Any]] = {}
    for r in results:
        if r["variant"] == "baseline" or (r["dataset"], r["seed"]) not in base:
            continue
        b = base[(r["dataset"], r["seed"])]
        entry = out.setdefault(r["variant"], {}).setdefault(r["dataset"], {"gains": [], "time_ratio": []})
        entry["gains"].append(selection_score(r) - selection_score(b))
        entry["time_ratio"].append(r["seconds_per_epoch"] / b["seconds_per_epoch"])
    return out


def runs_table(results: List[Dict[str, Any]]) -> str:
    headers = ["dataset", "variant", "seed", "val Jaccard", "val macro-F1", "test Jaccard (saved thr.)",
               "test micro-F1 (saved thr.)", "test macro-F1 (label-f1 thr.)", "epochs", "s/epoch", "best"]
    rows = [[r["dataset"], r["variant"], r["seed"], c.fmt(r["validation_jaccard"], 4), c.fmt(r["validation_macro_f1"], 4),
             c.fmt(r["test_jaccard"], 4), c.fmt(r["test_micro_f1"], 4), c.fmt(r["test_macro_f1"], 4),
             c.fmt(r["epochs_run"], 1), c.fmt(r["seconds_per_epoch"]), r["best_checkpoint"] or ""]
            for r in results]
    return c.md_table(headers, rows)


def summary_table(results: List[Dict[str, Any]], variants: Sequence[str]) -> str:
    headers = ["dataset", "variant", "seeds", "test Jaccard", "test micro-F1", "test macro-F1 (label-f1)",
               "val selection score", "gain vs baseline per seed (val)", "s/epoch (x baseline)"]
    judged = verdicts(results)
    rows = []
    for ds_name in dict.fromkeys(r["dataset"] for r in results):
        for name in variants:
            mine = [r for r in results if r["dataset"] == ds_name and r["variant"] == name]
            if not mine:
                continue
            entry = judged.get(name, {}).get(ds_name)
            gains = ", ".join(f"{g:+.4f}" for g in entry["gains"]) if entry else ""
            ratio = f" ({statistics.mean(entry['time_ratio']):.2f}x)" if entry else ""
            rows.append([ds_name, name, len(mine),
                         mean_spread([r["test_jaccard"] for r in mine]),
                         mean_spread([r["test_micro_f1"] for r in mine]),
                         mean_spread([r["test_macro_f1"] for r in mine]),
                         mean_spread([selection_score(r) for r in mine]),
                         gains, f"{statistics.mean(r['seconds_per_epoch'] for r in mine):.0f}{ratio}"])
    return c.md_table(headers, rows)


def decision_lines(results: List[Dict[str, Any]], datasets: Sequence[str]) -> List[str]:
    """The adoption rule applied: wins on every seed of every dataset, within 1.3x the time per epoch."""
    lines = []
    for name, by_dataset in verdicts(results).items():
        wins = [ds for ds in datasets if ds in by_dataset and all(g > 0 for g in by_dataset[ds]["gains"])]
        slow = [ds for ds in datasets if ds in by_dataset and statistics.mean(by_dataset[ds]["time_ratio"]) > 1.3]
        adopt = len(wins) == len(datasets) and all(ds in by_dataset for ds in datasets) and not slow
        untried = [ds for ds in datasets if ds not in by_dataset]
        lines.append(f"- `{name}`: beats the baseline on every seed of {', '.join(wins) if wins else 'no dataset'}"
                     + (f"; slower than 1.3x on {', '.join(slow)}" if slow else "")
                     + (f"; not trained on {', '.join(untried)} (staged screening: it had already lost a seed)"
                        if untried else "")
                     + (" -> meets the rule" if adopt else " -> stays an option"))
    return lines


def timing_table(results: List[Dict[str, Any]], variants: Sequence[str]) -> str:
    """Seconds per epoch (from the seconds per step) of each variant per round, and against the baseline."""
    def per_epoch(name: str) -> List[float]:
        return [r["seconds_per_epoch"] for r in results if r["variant"] == name]

    base = statistics.mean(per_epoch("baseline")) if per_epoch("baseline") else None
    rows = [[name, ", ".join(f"{v:.0f}" for v in per_epoch(name)), f"{statistics.mean(per_epoch(name)):.0f}",
             f"{statistics.mean(per_epoch(name)) / base:.2f}x" if base else ""]
            for name in variants if per_epoch(name)]
    return c.md_table(["variant", "s/epoch per round", "mean", "x baseline"], rows)


def render(mode: str, results: List[Dict[str, Any]], variants: Sequence[str], datasets: Sequence[str],
           machine: Dict[str, Any], command: str) -> str:
    written = f"Written by `{command}`, finished {machine['date']}, on {c.machine_line(machine)}"
    if mode == "timing":
        return "\n".join([
            f"{written}.",
            "",
            f"{TIMING_STEPS} training steps of each variant on GoEmotions (batch 32, the first 64 dev/test rows for the "
            "one evaluation), rounds alternating the variants; seconds per epoch = training seconds / epochs run:",
            "",
            timing_table(results, variants),
        ])
    lines = [
        f"{written}; torch {machine['versions'].get('torch')}, transformers {machine['versions'].get('transformers')}.",
        "",
        "Variants (flags added to the protocol's command):",
        "",
        *[f"- `{name}`: " + (f"`{' '.join(VARIANTS[name])}`" if VARIANTS[name] else "none (today's defaults)")
          for name in variants],
        "",
        "Each run (test: thresholds tuned on validation; `saved thr.`: the default `jaccard` objective; macro-F1 at "
        "`label-f1` per-label thresholds; s/epoch: training seconds, evaluations included, per epoch):",
        "",
        runs_table(results),
        "",
        "Mean ± half range over seeds; the selection score is the validation mean of samples-Jaccard and macro-F1 "
        "(each at its thresholds), the figure adoption compares:",
        "",
        summary_table(results, variants),
        "",
        "The adoption rule applied (higher validation selection score than the baseline on every seed of every "
        "dataset, within 1.3x its time per epoch):",
        "",
        *decision_lines(results, datasets),
    ]
    return "\n".join(lines)


def input_lengths(datasets: Sequence[str]) -> str:
    """Mean tokens per training row, as trained (preprocessed, truncated at 128), and with the
    label names prepended as SpanEmo does (``label names [SEP] text``)."""
    from transformers import AutoTokenizer

    from mlbert.trainer.data import read_label_names_file, read_labelled_file
    from mlbert.trainer.head import default_base_model
    from mlbert.trainer.train_options import TrainOptions

    tokenizer = AutoTokenizer.from_pretrained(default_base_model())
    preprocessing = TrainOptions(output="", train="").preprocessing
    rows = []
    for ds_name in datasets:
        dataset = DATASETS[ds_name]
        folder = c.REPO / dataset.folder
        names = read_label_names_file(str(folder / "emotions.txt"))
        texts = preprocessing.apply(read_labelled_file(str(folder / "train.tsv.gz"), label_names=names,
                                                       label_id_base=dataset.first_label_id).texts)
        plain = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
        prefix = " ".join(names)
        paired = [len(ids) for ids in tokenizer([prefix] * len(texts), texts, truncation="only_second",
                                                max_length=128 + len(tokenizer(prefix)["input_ids"]))["input_ids"]]
        mean_plain, mean_paired = statistics.mean(plain), statistics.mean(paired)
        rows.append([ds_name, len(texts), len(names), c.fmt(mean_plain, 1), c.fmt(mean_paired, 1),
                     f"{mean_paired / mean_plain:.2f}x"])
    table = c.md_table(["dataset", "train rows", "labels", "tokens per row", "with label names prepended", "ratio"], rows)
    return "\n".join([f"Written by `python benchmarks/bench_recipe.py --mode lengths` (packaged all-MiniLM-L6-v2 "
                      "tokenizer, mlb-train's default preprocessing, whole training splits):", "", table])


def write_doc(mode: str, text: str, doc: Path = DOC) -> None:
    """Replace this mode's block between its markers in docs/RECIPE.md (appended when absent)."""
    begin, end = f"<!-- bench_recipe {mode}: begin -->", f"<!-- bench_recipe {mode}: end -->"
    block = f"{begin}\n{text}\n{end}"
    current = doc.read_text(encoding="utf-8") if doc.exists() else "# The training recipe study\n"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(current, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted([*SEEDS, "lengths"]), default="short")
    parser.add_argument("--variants", default=None, help="comma-separated (default: all; confirm: baseline,ema)")
    parser.add_argument("--datasets", default=None, help="comma-separated (default: both; confirm: goemotions)")
    parser.add_argument("--lock", metavar="FILE", help="run each training under flock FILE")
    parser.add_argument("--rerun", action="store_true", help="train again even where a finished run exists")
    parser.add_argument("--no-doc", action="store_true", help="print the tables without writing docs/RECIPE.md")
    parser.add_argument("--every-run", action="store_true",
                        help="full: train every variant on every dataset (default: a variant that loses a seed on "
                             "one dataset is not trained on the next)")
    args = parser.parse_args()
    confirm = args.mode == "confirm"
    variants = (args.variants or ("baseline,ema" if confirm else ",".join(VARIANTS))).split(",")
    one_dataset = args.mode in ("confirm", "timing")
    datasets = (args.datasets or ("goemotions" if one_dataset else ",".join(DATASETS))).split(",")
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}: use {', '.join(VARIANTS)}")
    for name in datasets:
        if name not in DATASETS:
            parser.error(f"unknown dataset {name!r}: use {', '.join(DATASETS)}")
    if args.mode == "lengths":
        text = input_lengths(datasets)
        print(text)
        if not args.no_doc:
            write_doc(args.mode, text)
        return
    results = run_study(args.mode, datasets, variants, args.lock, args.rerun, args.every_run)
    shown = ["python benchmarks/bench_recipe.py", "--mode", args.mode]
    if args.variants:
        shown += ["--variants", args.variants]
    if args.datasets:
        shown += ["--datasets", args.datasets]
    text = render(args.mode, results, variants, datasets, c.machine_info(), " ".join(shown))
    print(text)
    (RUNS_DIR / args.mode).mkdir(parents=True, exist_ok=True)
    (RUNS_DIR / args.mode / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if not args.no_doc and args.mode != "short":
        write_doc(args.mode, text)
        c.log(f"wrote {DOC}")


if __name__ == "__main__":
    main()
