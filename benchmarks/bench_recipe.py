"""The recipe studies: each candidate training change against today's defaults, on GoEmotions and XED English.

Every variant is one ``mlb-train`` run per dataset and seed, on the data shipped in
``data/`` (GoEmotions' official split; XED English's fixed seeded split), the same
protocol for all; each differs from the baseline only by its flags
(``recipe_variants.py``). Thresholds are tuned and the best checkpoint picked on validation
only; the test split is scored once per run. The script prints the tables and writes them
into docs/RECIPE.md between the mode's markers (the prose around them is edited by hand).

The first study (losses, layer-wise rates, EMA; finished):

* ``short``: a quick look (seconds to minutes per run): 1,500 training rows, 60 steps,
  the first 500 validation and test rows, one seed; by default the second study's levers,
  any variant of either study by name. Not for conclusions.
* ``full``: the screening protocol of docs/RECIPE.md: whole splits, a fixed number of
  epochs per dataset, no early stopping, seeds 42 and 43; staged: XED English first, and
  only the variants that beat the baseline on both its seeds go on to GoEmotions
  (``--every-run``: all of them).
* ``timing``: the time per step of each variant, 200 steps on GoEmotions, two rounds that
  alternate the variants, so that a busy moment of the machine does not favour one.
* ``confirm``: mlb-train's defaults as ``benchmarks/train_goemotions.sh`` runs them (up to 6
  epochs, early stopping), for the variants named with ``--variants``, on GoEmotions.

The second study (issue 27: ``mean``, ``intermediate``, ``labels-in``, ``msd``, ``soup``,
``seed-soup`` and the schedule sweep), with its own rule (``recipe_doc``: the mean over two
seeds rises on both sets, an XED run within 30 minutes, all stages counted):

* ``levers``: the screening protocol for the levers (staged: a lever whose XED mean does not
  rise is not trained on GoEmotions, ``--every-run`` trains it anyway). ``--variants`` may
  name sweep points (``sweep_lr2e-4_bs16``) and ``+`` combinations (``mean+msd``).
* ``sweep``: the staged grid of ``recipe_sweep.py`` on XED English, then its best point
  judged by the rule.
* ``levers-confirm``: the adopted combination against the baseline with full runs (up to 6
  epochs, early stopping), both sets, two seeds (``--variants baseline,mean+msd``).
* ``lengths`` and ``label-cost``: what label names in the input cost (``recipe_cost.py``).

Finished runs (``metrics.json`` present) are read back, so an interrupted study continues
where it stopped; ``--rerun`` trains them again. ``--lock FILE`` runs each training under
``flock FILE``.

    python benchmarks/bench_recipe.py --mode short
    python benchmarks/bench_recipe.py --mode levers --lock /tmp/mlb-cpu.lock
    python benchmarks/bench_recipe.py --mode sweep --lock /tmp/mlb-cpu.lock
    python benchmarks/bench_recipe.py --mode levers-confirm --variants baseline,mean+msd --lock /tmp/mlb-cpu.lock
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402
import recipe_cost  # noqa: E402
import recipe_doc  # noqa: E402
import recipe_runs  # noqa: E402
import recipe_sweep  # noqa: E402
from recipe_variants import DATASETS, LEVERS, VARIANTS, Flags, known  # noqa: E402

SEEDS = {"short": (42,), "full": (42, 43), "confirm": (42,), "timing": (42, 43), "levers": (42, 43),
         "levers-confirm": (42, 43), "sweep": recipe_sweep.JUDGE_SEEDS}
FIRST_STUDY = ("short", "full", "confirm", "timing")
# The folder a mode's runs live in: the sweep shares the levers' protocol, so their runs (the baseline's) too.
RUN_MODE = {"sweep": "levers"}


def table_of(mode: str) -> Dict[str, Flags]:
    """The variants a mode knows: the first study's, the second's, or (the quick look) both."""
    if mode == "short":
        return {**VARIANTS, **LEVERS}
    return VARIANTS if mode in FIRST_STUDY else LEVERS  # type: ignore[return-value]


def run_study(mode: str, datasets: Sequence[str], variants: Sequence[str], lock: Optional[str],
              rerun: bool, every_run: bool = False) -> List[Dict[str, Any]]:
    """Every (dataset, seed, variant) run of the mode, datasets in ``DATASETS`` order.

    Screening is staged (``full`` and ``levers``, unless ``every_run``): a variant that cannot
    meet its study's rule after one dataset is not trained on the next (its finished runs
    are still read). XED English comes first: a third of GoEmotions' training steps.
    """
    results: List[Dict[str, Any]] = []
    alive = list(variants)
    folder_mode = RUN_MODE.get(mode, mode)
    for ds_name in [d for d in DATASETS if d in datasets]:
        for seed in SEEDS[mode]:
            for name in variants:
                done = (recipe_runs.run_folder(folder_mode, ds_name, name, seed) / "metrics.json").exists()
                if name in alive or done:
                    results.append(recipe_runs.run_one(folder_mode, ds_name, name, seed, lock, rerun and name in alive,
                                                       table_of(mode)))
        if every_run or "baseline" not in variants or mode not in ("full", "levers"):
            continue
        here = [r for r in results if r["dataset"] == ds_name]
        if mode == "full":
            judged = recipe_doc.verdicts(here)
            alive = ["baseline"] + [n for n in alive if n != "baseline" and all(
                g > 0 for g in judged.get(n, {}).get(ds_name, {"gains": [0.0]})["gains"])]
        else:
            alive = ["baseline"] + [n for n in alive if n != "baseline" and _rises(here, n, ds_name)]
    return results


def _rises(results: List[Dict[str, Any]], name: str, ds_name: str) -> bool:
    try:
        return recipe_doc.mean_gain(results, name, ds_name) > 0
    except KeyError:
        return False


def run_sweep(datasets: Sequence[str], lock: Optional[str], rerun: bool, machine: Dict[str, Any], command: str) -> str:
    def run_one(ds_name: str, name: str, seed: int) -> Dict[str, Any]:
        return recipe_runs.run_one("levers", ds_name, name, seed, lock, rerun, LEVERS)

    stages, judged = recipe_sweep.run_sweep(run_one, datasets)
    rows = [row for stage in stages for row in stage["rows"]] + judged
    _save_results("sweep", rows)
    return "\n".join(recipe_sweep.render_sweep(stages, judged, datasets,
                                               lambda r: recipe_doc.runs_table(r, seconds="run"),
                                               recipe_doc.written_line(command, machine)))


def _save_results(mode: str, results: List[Dict[str, Any]]) -> None:
    folder = recipe_runs.RUNS_DIR / mode
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def render(mode: str, results: List[Dict[str, Any]], variants: Sequence[str], datasets: Sequence[str],
           machine: Dict[str, Any], command: str) -> str:
    if mode == "timing":
        return recipe_doc.render_timing(results, variants, machine, command, recipe_runs.TIMING_STEPS)
    if mode in FIRST_STUDY and all(name in VARIANTS for name in variants):
        return recipe_doc.render_first_study(results, variants, datasets, machine, command)
    return recipe_doc.render_levers(results, variants, datasets, machine, command)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted([*SEEDS, "lengths", "label-cost"]), default="short")
    parser.add_argument("--variants", default=None,
                        help="comma-separated (default: the mode's study, all; confirm: baseline,ema)")
    parser.add_argument("--datasets", default=None, help="comma-separated (default: both; confirm, timing: goemotions)")
    parser.add_argument("--lock", metavar="FILE", help="run each training under flock FILE")
    parser.add_argument("--rerun", action="store_true", help="train again even where a finished run exists")
    parser.add_argument("--no-doc", action="store_true", help="print the tables without writing docs/RECIPE.md")
    parser.add_argument("--every-run", action="store_true",
                        help="full, levers: train every variant on every dataset (default: staged)")
    parser.add_argument("--limit", type=int, default=0, help="label-cost: the first N test rows (a quick check)")
    args = parser.parse_args(argv)
    table = table_of(args.mode)
    # confirm: the first study's; short: the second study's levers (any variant of either may be named)
    default = "baseline,ema" if args.mode == "confirm" else ",".join(LEVERS if args.mode == "short" else table)
    args.variant_list = (args.variants or default).split(",")
    one_dataset = args.mode in ("confirm", "timing")
    args.dataset_list = (args.datasets or ("goemotions" if one_dataset else ",".join(DATASETS))).split(",")
    for name in args.variant_list:
        if not known(name, table):
            parser.error(f"unknown variant {name!r}: use {', '.join(table)}, sweep points or + combinations")
    for name in args.dataset_list:
        if name not in DATASETS:
            parser.error(f"unknown dataset {name!r}: use {', '.join(DATASETS)}")
    return args


def shown_command(args: argparse.Namespace) -> str:
    shown = ["python benchmarks/bench_recipe.py", "--mode", args.mode]
    for flag, value in (("--variants", args.variants), ("--datasets", args.datasets)):
        if value:
            shown += [flag, value]
    return " ".join(shown)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    machine, command = c.machine_info(), shown_command(args)
    if args.mode == "lengths":
        text = recipe_cost.input_lengths(args.dataset_list)
    elif args.mode == "label-cost":
        results = recipe_cost.label_cost(args.dataset_list, args.limit)
        _save_results(args.mode, results)
        text = recipe_cost.render_label_cost(results, recipe_doc.written_line(command, machine))
    elif args.mode == "sweep":
        text = run_sweep(args.dataset_list, args.lock, args.rerun, machine, command)
    else:
        results = run_study(args.mode, args.dataset_list, args.variant_list, args.lock, args.rerun, args.every_run)
        machine["date"] = c.machine_info()["date"]  # "finished": after the runs, not when the command started
        _save_results(args.mode, results)
        text = render(args.mode, results, args.variant_list, args.dataset_list, machine, command)
    print(text)
    if not args.no_doc and args.mode != "short" and not (args.mode == "label-cost" and args.limit):
        recipe_doc.write_doc(args.mode, text)
        c.log(f"wrote {recipe_doc.DOC}")


if __name__ == "__main__":
    main()
