"""``--mode sweep``: a short, staged search of the 22M model's own schedule, then the adoption rule on the winner.

Today's learning rate, batch size, warm-up and weight decay were carried over from a first
measurement (docs/TRAINING.md), not searched. The search runs on XED English (the smaller
set: a 3-epoch run is ~6 minutes on 2 idle cores) at seed 42, with the screening protocol
(fixed epochs, no early stopping), one stage at a time around the previous stage's best:

1. learning rate x batch size, a 3 x 3 grid (they interact: a larger batch takes fewer,
   less noisy steps and usually wants a larger rate): lr 5e-5, 1e-4, 2e-4; batch 16, 32, 64;
2. warm-up ratio 0, 0.06, 0.2 (today 0.1);
3. weight decay 0, 0.1 (today 0.01).

That is 13 runs besides the baseline. The best point by validation selection score (the
study's score) is then judged like every lever: seed 43 on XED English and both seeds on
GoEmotions, beside the baseline, mean gain over the seeds on both sets. One seed decides the
search, which a seed's noise (about ±0.002 in this score on XED) can mislead; the judgement
on two seeds and two sets is what guards against it. The length of training is not in the
grid: the default recipe ends by early stopping, which the fixed-epoch protocol turns off;
``sweep_es1`` or ``sweep_ep6`` style points can be run in ``--mode levers-confirm``.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, List, Sequence, Tuple

from recipe_doc import lever_decision, selection_score
from recipe_variants import SWEEP_KNOBS, parse_sweep_point, sweep_point

# (stage name, {knob: values}): the stage's grid is the product, the other knobs at the previous best.
SWEEP_STAGES: List[Tuple[str, Dict[str, List[str]]]] = [
    ("learning rate x batch size", {"lr": ["5e-5", "1e-4", "2e-4"], "bs": ["16", "32", "64"]}),
    ("warm-up ratio", {"wu": ["0.0", "0.06", "0.1", "0.2"]}),
    ("weight decay", {"wd": ["0.0", "0.01", "0.1"]}),
]
SEARCH_DATASET = "xed-en"
SEARCH_SEED = 42
JUDGE_SEEDS = (42, 43)

RunOne = Callable[[str, str, int], Dict[str, Any]]  # (dataset, variant, seed) -> the run's row


def today() -> Dict[str, str]:
    """Today's values of the searched knobs (mlb-train's defaults)."""
    return {key: default for key, (_, default) in SWEEP_KNOBS.items() if default is not None}


def point_name(values: Dict[str, str]) -> str:
    """A point's variant name, knobs at today's value left out (today's values alone: ``baseline``)."""
    defaults = today()
    changed = {key: value for key, value in values.items() if defaults.get(key) != value}
    return sweep_point(**changed) if changed else "baseline"


def stage_points(grid: Dict[str, List[str]], centre: Dict[str, str]) -> List[str]:
    """The variant names of one stage: the grid's product, every other knob at ``centre``."""
    keys = list(grid)
    return [point_name(dict(centre, **dict(zip(keys, values)))) for values in itertools.product(*grid.values())]


def values_of(name: str) -> Dict[str, str]:
    return dict(today(), **(parse_sweep_point(name) if name != "baseline" else {}))


def search(run_one: RunOne) -> List[Dict[str, Any]]:
    """The staged search on XED English, seed 42; one record per stage (its rows and its best point)."""
    centre = today()
    stages = []
    for title, grid in SWEEP_STAGES:
        rows = [run_one(SEARCH_DATASET, name, SEARCH_SEED) for name in stage_points(grid, centre)]
        best = max(rows, key=selection_score)
        stages.append({"stage": title, "rows": rows, "best": best["variant"]})
        centre = values_of(best["variant"])
    return stages


def judge(best: str, run_one: RunOne, datasets: Sequence[str]) -> List[Dict[str, Any]]:
    """The winner and the baseline on every judged dataset and seed (the adoption rule's runs)."""
    return [run_one(ds, name, seed) for ds in datasets for seed in JUDGE_SEEDS for name in ("baseline", best)]


def run_sweep(run_one: RunOne, datasets: Sequence[str]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """The search, then the judgement of its best point (none when the baseline stayed best)."""
    stages = search(run_one)
    best = stages[-1]["best"]
    return stages, (judge(best, run_one, datasets) if best != "baseline" else [])


def render_sweep(stages: List[Dict[str, Any]], judged: List[Dict[str, Any]], datasets: Sequence[str],
                 table: Callable[[List[Dict[str, Any]]], str], written: str) -> List[str]:
    """The sweep's lines for docs/RECIPE.md: each stage's points, the winner, the rule applied to it."""
    lines = [written, ""]
    for number, stage in enumerate(stages, 1):
        lines += [f"Stage {number}, {stage['stage']} (XED English, seed {SEARCH_SEED}; best: `{stage['best']}`):", "",
                  table(stage["rows"]), ""]
    best = stages[-1]["best"] if stages else "baseline"
    if best == "baseline":
        return lines + ["No sweep point beat today's values on the search seed; nothing to judge."]
    decision = lever_decision(judged, best)
    gains = ", ".join(f"{ds} {g:+.4f}" for ds, g in decision["gains"].items())
    return lines + [f"The best point, `{best}`, against the baseline on both sets and seeds:", "", table(judged), "",
                    f"- `{best}`: mean gain in validation selection score {gains}"
                    + ("; over the 30-minute budget on XED English" if decision["over_budget"] else "")
                    + (" -> meets the rule" if decision["adopt"] else " -> stays an option")]
