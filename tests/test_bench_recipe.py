"""benchmarks/bench_recipe.py's logic without training: the variants' commands, the sweep's grid, the rules, the tables.

The study itself runs for hours (docs/RECIPE.md); what can be checked in a second is that
it would run the right commands and apply the rules it states.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_recipe  # noqa: E402
import recipe_doc  # noqa: E402
import recipe_runs  # noqa: E402
import recipe_sweep  # noqa: E402
from recipe_variants import LEVERS, VARIANTS, known, parse_sweep_point, shown_flags, sweep_point, variant_flags  # noqa: E402


def test_every_lever_has_a_command_and_old_variants_keep_theirs():
    for name in LEVERS:
        assert known(name, LEVERS)
    assert variant_flags("llrd", "xed-en", "full", VARIANTS) == ["--layer-lr-decay", "0.8", "--lr", "2e-4"]
    assert variant_flags("mean+msd", "xed-en", "levers") == ["--pooling", "mean", "--head-dropout-samples", "5"]
    assert not known("nope", LEVERS) and not known("sweep_zz3", LEVERS)


def test_intermediate_is_the_other_set_and_soup_evaluates_four_times_an_epoch():
    xed = variant_flags("intermediate", "xed-en", "levers")
    assert xed[xed.index("--intermediate-train") + 1] == "data/goemotions/train.tsv.gz"
    assert xed[xed.index("--intermediate-epochs") + 1] == "1"
    goemotions = variant_flags("intermediate", "goemotions", "levers")
    assert goemotions[goemotions.index("--intermediate-first-label-id") + 1] == "1"
    assert variant_flags("soup", "xed-en", "levers") == ["--average-checkpoints", "3", "--eval-steps", "109"]
    assert variant_flags("soup", "goemotions", "levers-confirm")[-2:] == ["--early-stopping-patience", "8"]
    # the quick look (60 steps) shortens both: four evaluations, and a first stage as short as the second
    assert variant_flags("soup", "xed-en", "short")[-1] == "15"
    assert variant_flags("intermediate", "xed-en", "short")[-4:] == ["--intermediate-limit-train", "1500",
                                                                      "--intermediate-max-steps", "60"]
    assert "xed-en:" in shown_flags("intermediate") and shown_flags("baseline") == "none (today's defaults)"


def test_train_command_puts_the_variant_after_the_protocol(tmp_path):
    out = recipe_runs.run_folder("levers", "xed-en", sweep_point(lr="2e-4", bs="16"), 42)
    command = recipe_runs.train_command(sweep_point(lr="2e-4", bs="16"), "xed-en", "levers", 42, out)
    assert command[:3] == ["mlb-train", "--train", "data/xed-en/train.tsv.gz"]
    protocol = command.index("--early-stopping-patience")
    assert command.index("--lr") > protocol and command[command.index("--lr") + 1] == "2e-4"
    assert command[-5:] == ["--seed", "42", "-o", "runs/recipe/levers/xed-en/sweep_lr2e-4_bs16/seed42", "--overwrite"]


def test_sweep_names_round_trip_and_stages_centre_on_the_previous_best():
    assert parse_sweep_point("sweep_lr2e-4_bs16_wu0.0") == {"lr": "2e-4", "bs": "16", "wu": "0.0"}
    first = recipe_sweep.stage_points(*[recipe_sweep.SWEEP_STAGES[0][1], recipe_sweep.today()])
    assert len(first) == 9 and "baseline" in first and "sweep_lr2e-4_bs16" in first
    centre = recipe_sweep.values_of("sweep_lr2e-4_bs16")
    second = recipe_sweep.stage_points(recipe_sweep.SWEEP_STAGES[1][1], centre)
    assert second == ["sweep_lr2e-4_bs16_wu0.0", "sweep_lr2e-4_bs16_wu0.06", "sweep_lr2e-4_bs16",
                      "sweep_lr2e-4_bs16_wu0.2"]


def row(dataset, variant, seed, jaccard, macro, seconds=300.0):
    return {"dataset": dataset, "variant": variant, "seed": seed, "validation_jaccard": jaccard,
            "validation_macro_f1": macro, "test_jaccard": 0.5, "test_micro_f1": 0.5, "test_macro_f1": 0.5,
            "epochs_run": 3.0, "seconds_per_epoch": seconds / 3, "run_seconds": seconds, "best_checkpoint": None}


def test_lever_rule_is_the_mean_over_seeds_on_both_sets_within_the_budget():
    results = [row("xed-en", "baseline", 42, 0.50, 0.50), row("xed-en", "baseline", 43, 0.50, 0.50),
               row("goemotions", "baseline", 42, 0.50, 0.50), row("goemotions", "baseline", 43, 0.50, 0.50),
               # one seed lower, the mean higher: the second study's rule adopts it (the first would not)
               row("xed-en", "mean", 42, 0.49, 0.49), row("xed-en", "mean", 43, 0.53, 0.53),
               row("goemotions", "mean", 42, 0.51, 0.51), row("goemotions", "mean", 43, 0.51, 0.51),
               row("xed-en", "intermediate", 42, 0.60, 0.60, seconds=2000),
               row("xed-en", "intermediate", 43, 0.60, 0.60, seconds=2000),
               row("goemotions", "intermediate", 42, 0.60, 0.60), row("goemotions", "intermediate", 43, 0.60, 0.60),
               row("xed-en", "msd", 42, 0.51, 0.51), row("xed-en", "msd", 43, 0.51, 0.51)]
    datasets = ["xed-en", "goemotions"]
    assert recipe_doc.lever_decision(results, "mean", datasets)["adopt"]
    assert recipe_doc.mean_gain(results, "mean", "xed-en") == pytest.approx(0.01)
    slow = recipe_doc.lever_decision(results, "intermediate", datasets)
    assert slow["over_budget"] and not slow["adopt"]
    untried = recipe_doc.lever_decision(results, "msd", datasets)
    assert untried["untried"] == ["goemotions"] and not untried["adopt"]
    # a run on one set only cannot meet a rule that names both
    xed_only = [r for r in results if r["dataset"] == "xed-en"]
    assert not recipe_doc.lever_decision(xed_only, "mean")["adopt"]
    assert "No variant met the rule" in recipe_doc.render_levers(
        xed_only, ["baseline", "mean"], ["xed-en"], {"date": "", "versions": {}, "cpu": "", "cpu_family": 0,
                                                     "cpu_model": 0, "cores": 2}, "cmd")
    text = recipe_doc.render_levers(results, ["baseline", "mean", "intermediate", "msd"], datasets,
                                    {"date": "today", "versions": {}, "cpu": "a CPU", "cpu_family": 25, "cpu_model": 17,
                                     "cores": 2},
                                    "python benchmarks/bench_recipe.py --mode levers")
    assert "`mean`: mean gain in validation selection score xed-en +0.0100, goemotions +0.0100 -> meets the rule" \
        in text
    assert "over the 30-minute budget" in text and "--variants baseline,mean`" in text


def test_staged_levers_screening_stops_a_lever_that_does_not_rise(monkeypatch):
    scores = {"baseline": 0.5, "mean": 0.52, "msd": 0.49}
    trained = []

    def fake_run_one(mode, ds, name, seed, lock, rerun, table):
        trained.append((ds, name, seed))
        return row(ds, name, seed, scores[name], scores[name])

    monkeypatch.setattr(recipe_runs, "run_one", fake_run_one)
    bench_recipe.run_study("levers", ["xed-en", "goemotions"], ["baseline", "mean", "msd"], None, False)
    assert ("goemotions", "mean", 42) in trained and ("goemotions", "msd", 42) not in trained
    assert ("xed-en", "msd", 43) in trained


def test_arguments_accept_levers_sweep_points_and_combinations():
    args = bench_recipe.parse_args(["--mode", "levers-confirm", "--variants", "baseline,mean+sweep_lr2e-4"])
    assert args.variant_list == ["baseline", "mean+sweep_lr2e-4"] and args.dataset_list == ["xed-en", "goemotions"]
    assert bench_recipe.parse_args(["--mode", "full"]).variant_list == list(VARIANTS)
    assert bench_recipe.parse_args(["--mode", "short"]).variant_list == list(LEVERS)
    assert bench_recipe.parse_args(["--mode", "short", "--variants", "asl,mean"]).variant_list == ["asl", "mean"]
    with pytest.raises(SystemExit):
        bench_recipe.parse_args(["--mode", "levers", "--variants", "asl+nope"])
