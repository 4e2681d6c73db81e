"""trainer.thresholds: each objective picks the threshold worked out by hand."""

import numpy as np
import pytest

from mlbert.errors import UsageError
from mlbert.trainer.metrics import multilabel_metrics
from mlbert.decisions import THRESHOLD_GRID as GRID
from mlbert.trainer.thresholds import FALLBACK_THRESHOLD, OBJECTIVES, tune_all, tune_thresholds


def test_label_f1_picks_one_threshold_per_label():
    # label 0: positives .8 .9, negatives .3 .7 -> F1 = 1 for t in (0.70, 0.80]; tie -> closest to 0.5 = 0.71
    # label 1: positives .2 .25, negatives .1 .05 -> F1 = 1 for t in (0.10, 0.20] -> 0.20
    # label 2: no positive in validation -> the fallback
    y = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    p = np.array([[0.8, 0.2, 0.9], [0.9, 0.25, 0.1], [0.3, 0.1, 0.2], [0.7, 0.05, 0.6]])
    t = tune_thresholds(y, p, "label-f1")
    assert t.shape == (3,)
    assert t[0] == pytest.approx(0.71)
    assert t[1] == pytest.approx(0.20)
    assert t[2] == FALLBACK_THRESHOLD
    assert multilabel_metrics(y, p, t)["per_label"]["0"]["f1"] == 1.0


def test_global_objectives_pick_one_shared_threshold():
    # Perfect separation needs t in (0.3, 0.4] for label 1 and (0.2, 0.6] for label 0 -> 0.40 (closest to 0.5).
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.6, 0.3], [0.2, 0.4]])
    for objective in ("jaccard", "micro-f1", "macro-f1"):
        t = tune_thresholds(y, p, objective)
        assert t.tolist() == pytest.approx([0.40, 0.40]), objective
        m = multilabel_metrics(y, p, t)
        assert m["samples_jaccard"] == 1.0 and m["exact_match"] == 1.0


def test_global_threshold_is_the_grid_maximum():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 4)) < 0.3).astype(int)
    p = np.clip(y * 0.35 + rng.random((60, 4)) * 0.6, 0, 1)
    t = tune_thresholds(y, p, "jaccard")
    best = max(multilabel_metrics(y, p, g)["samples_jaccard"] for g in GRID)
    assert multilabel_metrics(y, p, t)["samples_jaccard"] == pytest.approx(best)
    assert len(set(t.tolist())) == 1


def test_objectives_trade_off_and_tune_all_covers_each():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 5)) < [0.5, 0.3, 0.1, 0.05, 0.4]).astype(int)
    p = np.clip(y * 0.3 + rng.random((200, 5)) * 0.7, 0, 1)
    all_t = tune_all(y, p)
    assert set(all_t) == set(OBJECTIVES)
    by_label = multilabel_metrics(y, p, all_t["label-f1"])
    by_jaccard = multilabel_metrics(y, p, all_t["jaccard"])
    at_half = multilabel_metrics(y, p, 0.5)
    by_micro = multilabel_metrics(y, p, all_t["micro-f1"])
    # Per-label F1 thresholds win macro-F1 against any one shared threshold ...
    assert by_label["macro_f1"] >= by_jaccard["macro_f1"] - 1e-12
    assert by_label["macro_f1"] >= at_half["macro_f1"] - 1e-12
    # ... and each global objective wins its own metric among shared thresholds.
    assert by_jaccard["samples_jaccard"] >= max(at_half["samples_jaccard"], by_micro["samples_jaccard"]) - 1e-12
    assert by_micro["micro_f1"] >= max(at_half["micro_f1"], by_jaccard["micro_f1"]) - 1e-12


def test_unknown_objective_is_a_usage_error():
    with pytest.raises(UsageError, match="label-f1"):
        tune_thresholds(np.zeros((2, 2)), np.zeros((2, 2)), "accuracy")
