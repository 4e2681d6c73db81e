"""The recipe studies' tables and adoption rules, and their blocks in docs/RECIPE.md.

Two rules, one per study, both on the validation selection score (the mean of
samples-Jaccard at ``jaccard`` thresholds and macro-F1 at ``label-f1`` thresholds); test
figures are shown beside them and never decide:

* the first study (``full``): beat the baseline on every seed of both data sets, within
  1.3x its time per epoch;
* the second (issue 27: ``levers``, ``sweep``, ``levers-confirm``): the mean over the seeds
  rises above the baseline's mean on both data sets, and a run on XED English (the
  target-size set) fits the 30-minute budget, every stage counted (the intermediate
  task's first stage, both runs of a seed soup).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Sequence

import common as c
from recipe_variants import DATASETS, VARIANTS, shown_flags

DOC = c.REPO / "docs" / "RECIPE.md"
# The second study's rule names both sets: a run on one of them (--datasets) cannot meet it.
RULE_DATASETS = tuple(DATASETS)
BUDGET_SECONDS = 30 * 60
BUDGET_DATASET = "xed-en"


def selection_score(row: Dict[str, Any]) -> float:
    """What adoption compares (validation only): the mean of samples-Jaccard and macro-F1 at their thresholds."""
    return (row["validation_jaccard"] + row["validation_macro_f1"]) / 2.0


def mean_spread(values: Sequence[float]) -> str:
    """``mean ± half range`` (two seeds: the half distance between them)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def verdicts(results: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per variant and dataset: its gain over the baseline's selection score per seed, and time ratios."""
    base = {(r["dataset"], r["seed"]): r for r in results if r["variant"] == "baseline"}
    out: Dict[str, Dict[str, Any]] = {}
    for r in results:
        if r["variant"] == "baseline" or (r["dataset"], r["seed"]) not in base:
            continue
        b = base[(r["dataset"], r["seed"])]
        entry = out.setdefault(r["variant"], {}).setdefault(r["dataset"], {"gains": [], "time_ratio": [],
                                                                             "run_ratio": []})
        entry["gains"].append(selection_score(r) - selection_score(b))
        entry["time_ratio"].append(r["seconds_per_epoch"] / b["seconds_per_epoch"])
        if r.get("run_seconds") and b.get("run_seconds"):
            entry["run_ratio"].append(r["run_seconds"] / b["run_seconds"])
    return out


def mean_gain(results: List[Dict[str, Any]], variant: str, dataset: str) -> float:
    """The variant's mean selection score over its seeds minus the baseline's mean over the same seeds."""
    mine = {r["seed"]: selection_score(r) for r in results if r["dataset"] == dataset and r["variant"] == variant}
    base = {r["seed"]: selection_score(r) for r in results if r["dataset"] == dataset and r["variant"] == "baseline"}
    seeds = sorted(set(mine) & set(base))
    if not seeds:
        raise KeyError(f"{variant} on {dataset}: no seed shared with the baseline")
    return statistics.mean(mine[s] for s in seeds) - statistics.mean(base[s] for s in seeds)


def over_budget(results: List[Dict[str, Any]], variant: str) -> bool:
    """Whether the variant's runs on the budget's data set take more than 30 minutes (mean, all stages)."""
    seconds = [r["run_seconds"] for r in results if r["dataset"] == BUDGET_DATASET and r["variant"] == variant
               and r.get("run_seconds")]
    return bool(seconds) and statistics.mean(seconds) > BUDGET_SECONDS


def lever_decision(results: List[Dict[str, Any]], variant: str,
                   datasets: Sequence[str] = RULE_DATASETS) -> Dict[str, Any]:
    """The second study's rule for one variant: mean gain > 0 on every dataset (both sets), within the budget."""
    gains: Dict[str, float] = {}
    for ds in datasets:
        try:
            gains[ds] = mean_gain(results, variant, ds)
        except KeyError:
            continue
    tried = [ds for ds in datasets if ds in gains]
    slow = over_budget(results, variant)
    adopt = len(tried) == len(datasets) and all(g > 0 for g in gains.values()) and not slow
    return {"gains": gains, "untried": [ds for ds in datasets if ds not in gains], "over_budget": slow,
            "adopt": adopt}


def lever_lines(results: List[Dict[str, Any]], variants: Sequence[str], datasets: Sequence[str]) -> List[str]:
    """One line per variant: the rule applied."""
    lines = []
    for name in variants:
        if name == "baseline":
            continue
        d = lever_decision(results, name, datasets)
        shown = ", ".join(f"{ds} {g:+.4f}" for ds, g in d["gains"].items()) or "no run beside the baseline"
        lines.append(f"- `{name}`: mean gain in validation selection score {shown}"
                     + (f"; not run on {', '.join(d['untried'])}"
                        + (" (staged: it did not rise on an earlier set)" if any(g <= 0 for g in d["gains"].values())
                           else "") if d["untried"] else "")
                     + ("; over the 30-minute budget on XED English" if d["over_budget"] else "")
                     + (" -> meets the rule" if d["adopt"] else " -> stays an option"))
    return lines


def runs_table(results: List[Dict[str, Any]], seconds: str = "epoch") -> str:
    """Every run; ``seconds`` "epoch" (the first study's s/epoch) or "run" (all stages of the run)."""
    last = ["epochs", "s/epoch", "best"] if seconds == "epoch" else ["epochs", "seconds (all stages)", "val score"]
    headers = ["dataset", "variant", "seed", "val Jaccard", "val macro-F1", "test Jaccard (saved thr.)",
               "test micro-F1 (saved thr.)", "test macro-F1 (label-f1 thr.)", *last]
    rows = []
    for r in results:
        tail = ([c.fmt(r["seconds_per_epoch"]), r["best_checkpoint"] or ""] if seconds == "epoch"
                else [c.fmt(r.get("run_seconds")), c.fmt(selection_score(r), 4)])
        rows.append([r["dataset"], r["variant"], r["seed"], c.fmt(r["validation_jaccard"], 4),
                     c.fmt(r["validation_macro_f1"], 4), c.fmt(r["test_jaccard"], 4), c.fmt(r["test_micro_f1"], 4),
                     c.fmt(r["test_macro_f1"], 4), c.fmt(r["epochs_run"], 1), *tail])
    return c.md_table(headers, rows)


def summary_table(results: List[Dict[str, Any]], variants: Sequence[str], seconds: str = "epoch") -> str:
    """Mean ± half range over seeds per (dataset, variant), the gain per seed and the time against the baseline."""
    time_header = "s/epoch (x baseline)" if seconds == "epoch" else "s/run (x baseline)"
    headers = ["dataset", "variant", "seeds", "test Jaccard", "test micro-F1", "test macro-F1 (label-f1)",
               "val selection score", "gain vs baseline per seed (val)", time_header]
    judged = verdicts(results)
    rows = []
    for ds_name in dict.fromkeys(r["dataset"] for r in results):
        for name in variants:
            mine = [r for r in results if r["dataset"] == ds_name and r["variant"] == name]
            if not mine:
                continue
            entry = judged.get(name, {}).get(ds_name)
            gains = ", ".join(f"{g:+.4f}" for g in entry["gains"]) if entry else ""
            key, ratio_key = ("seconds_per_epoch", "time_ratio") if seconds == "epoch" else ("run_seconds", "run_ratio")
            ratio = f" ({statistics.mean(entry[ratio_key]):.2f}x)" if entry and entry[ratio_key] else ""
            rows.append([ds_name, name, len(mine), mean_spread([r["test_jaccard"] for r in mine]),
                         mean_spread([r["test_micro_f1"] for r in mine]), mean_spread([r["test_macro_f1"] for r in mine]),
                         mean_spread([selection_score(r) for r in mine]), gains,
                         f"{statistics.mean(r.get(key) or 0.0 for r in mine):.0f}{ratio}"])
    return c.md_table(headers, rows)


def decision_lines(results: List[Dict[str, Any]], datasets: Sequence[str]) -> List[str]:
    """The first study's rule: wins on every seed of every dataset, within 1.3x the time per epoch."""
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


def written_line(command: str, machine: Dict[str, Any]) -> str:
    return (f"Written by `{command}`, finished {machine['date']}, on {c.machine_line(machine)}; "
            f"torch {machine['versions'].get('torch')}, transformers {machine['versions'].get('transformers')}.")


def render_first_study(results: List[Dict[str, Any]], variants: Sequence[str], datasets: Sequence[str],
                       machine: Dict[str, Any], command: str) -> str:
    """The ``full``/``confirm`` block of the first study (the candidates of ``VARIANTS``)."""
    return "\n".join([
        written_line(command, machine), "", "Variants (flags added to the protocol's command):", "",
        *[f"- `{name}`: " + (f"`{' '.join(VARIANTS[name])}`" if VARIANTS[name] else "none (today's defaults)")
          for name in variants],
        "", "Each run (test: thresholds tuned on validation; `saved thr.`: the default `jaccard` objective; macro-F1 at "
        "`label-f1` per-label thresholds; s/epoch: training seconds, evaluations included, per epoch):", "",
        runs_table(results), "",
        "Mean ± half range over seeds; the selection score is the validation mean of samples-Jaccard and macro-F1 "
        "(each at its thresholds), the figure adoption compares:", "",
        summary_table(results, variants), "",
        "The adoption rule applied (higher validation selection score than the baseline on every seed of every "
        "dataset, within 1.3x its time per epoch):", "",
        *decision_lines(results, datasets),
    ])


def render_levers(results: List[Dict[str, Any]], variants: Sequence[str], datasets: Sequence[str],
                  machine: Dict[str, Any], command: str) -> str:
    """The second study's block (``levers``, ``levers-confirm``): variants, every run, means, the rule
    (always on both sets, whatever ``datasets`` were run)."""
    datasets = RULE_DATASETS
    adopted = [n for n in variants if n != "baseline" and lever_decision(results, n, datasets)["adopt"]]
    return "\n".join([
        written_line(command, machine), "", "Variants (flags added to the protocol's command):", "",
        *[f"- `{name}`: {shown_flags(name)}" for name in variants],
        "", "Each run (test: thresholds tuned on validation; `saved thr.`: the default `jaccard` objective; macro-F1 at "
        "`label-f1` per-label thresholds; seconds: the whole run as mlb-train counts it, every stage, evaluations "
        "included):", "",
        runs_table(results, seconds="run"), "",
        "Mean ± half range over seeds; the selection score is the validation mean of samples-Jaccard and macro-F1 "
        "(each at its thresholds):", "",
        summary_table(results, variants, seconds="run"), "",
        "The adoption rule applied (the mean validation selection score over the seeds rises above the baseline's on "
        "every dataset, and an XED English run, all stages, stays within 30 minutes):", "",
        *lever_lines(results, variants, datasets), "",
        ("Adopted, to combine and confirm: " + ", ".join(f"`{n}`" for n in adopted) + " (`--mode levers-confirm "
         f"--variants baseline,{'+'.join(adopted)}`)." if adopted else "No variant met the rule."),
    ])


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


def timing_table(results: List[Dict[str, Any]], variants: Sequence[str]) -> str:
    """Seconds per epoch (from the seconds per step) of each variant per round, and against the baseline."""
    def per_epoch(name: str) -> List[float]:
        return [r["seconds_per_epoch"] for r in results if r["variant"] == name]

    base = statistics.mean(per_epoch("baseline")) if per_epoch("baseline") else None
    rows = [[name, ", ".join(f"{v:.0f}" for v in per_epoch(name)), f"{statistics.mean(per_epoch(name)):.0f}",
             f"{statistics.mean(per_epoch(name)) / base:.2f}x" if base else ""]
            for name in variants if per_epoch(name)]
    return c.md_table(["variant", "s/epoch per round", "mean", "x baseline"], rows)


def render_timing(results: List[Dict[str, Any]], variants: Sequence[str], machine: Dict[str, Any], command: str,
                  steps: int) -> str:
    return "\n".join([
        f"Written by `{command}`, finished {machine['date']}, on {c.machine_line(machine)}.", "",
        f"{steps} training steps of each variant on GoEmotions (batch 32, the first 64 dev/test rows for the "
        "one evaluation), rounds alternating the variants; seconds per epoch = training seconds / epochs run:", "",
        timing_table(results, variants),
    ])
