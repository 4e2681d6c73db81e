"""trainer.metrics against values worked out by hand (see the comments)."""

import math

import numpy as np
import pytest

from mlbert.trainer.metrics import format_table, multilabel_metrics, predict

Y = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
P = np.array([[0.9, 0.2, 0.4], [0.6, 0.7, 0.1], [0.1, 0.2, 0.3], [0.8, 0.4, 0.6]])
NAMES = ["a", "b", "c"]
# At 0.5 the predictions are [[1,0,0],[1,1,0],[0,0,0],[1,0,1]].


def test_predict_uses_greater_or_equal_and_per_label_thresholds():
    assert predict([[0.5, 0.5]], 0.5).tolist() == [[1, 1]]
    assert predict([[0.5, 0.5]], [0.4, 0.6]).tolist() == [[1, 0]]


def test_metrics_at_half_match_hand_computed_values():
    m = multilabel_metrics(Y, P, 0.5, NAMES)
    # Jaccard per row: 1/2, 1/2, empty-vs-empty = 1, {a,b} vs {a,c} = 1/3.
    assert m["samples_jaccard"] == pytest.approx((0.5 + 0.5 + 1 + 1 / 3) / 4)
    # TP=3, FP=2, FN=2 over all cells.
    assert m["micro_f1"] == pytest.approx(6 / 10)
    assert m["micro_precision"] == pytest.approx(3 / 5)
    assert m["micro_recall"] == pytest.approx(3 / 5)
    # a: tp2 fp1 fn0 -> 0.8; b: tp1 fp0 fn1 -> 2/3; c: tp0 fp1 fn1 -> 0.
    assert m["per_label"]["a"]["f1"] == pytest.approx(0.8)
    assert m["per_label"]["a"]["precision"] == pytest.approx(2 / 3)
    assert m["per_label"]["a"]["recall"] == pytest.approx(1.0)
    assert m["per_label"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["per_label"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert [m["per_label"][n]["support"] for n in NAMES] == [2, 2, 1]
    assert [m["per_label"][n]["predicted"] for n in NAMES] == [3, 1, 1]
    # Only row 3 (nothing true, nothing predicted) is exactly right.
    assert m["exact_match"] == pytest.approx(0.25)
    assert "accuracy" not in m


def test_roc_auc_uses_probabilities_not_predictions():
    m = multilabel_metrics(Y, P, 0.5, NAMES)
    # a and b: every positive outranks every negative; c: 0.4 beats 0.1 and 0.3 but not 0.6.
    assert m["per_label"]["a"]["roc_auc"] == pytest.approx(1.0)
    assert m["per_label"]["b"]["roc_auc"] == pytest.approx(1.0)
    assert m["per_label"]["c"]["roc_auc"] == pytest.approx(2 / 3)
    assert m["macro_roc_auc"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    # Flattened: positives .9 .4 .7 .8 .4 against negatives .2 .6 .1 .1 .2 .3 .6 -> 31 of 35 pairs.
    assert m["micro_roc_auc"] == pytest.approx(31 / 35)
    # Thresholds do not change ROC-AUC.
    assert multilabel_metrics(Y, P, 0.05)["macro_roc_auc"] == pytest.approx(m["macro_roc_auc"])


def test_label_with_one_class_is_left_out_of_roc_auc():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    p = np.array([[0.8, 0.1], [0.3, 0.2], [0.6, 0.9]])
    m = multilabel_metrics(y, p, 0.5, ["x", "never"])
    assert m["per_label"]["never"]["roc_auc"] is None
    assert m["roc_auc_undefined_labels"] == ["never"]
    assert m["macro_roc_auc"] == pytest.approx(1.0)  # only "x" counts
    assert m["per_label"]["never"]["f1"] == 0.0  # one false positive, no positives
    none_at_all = multilabel_metrics(np.zeros((2, 1)), np.array([[0.2], [0.7]]), 0.5)
    assert none_at_all["macro_roc_auc"] is None and none_at_all["micro_roc_auc"] is None


def test_per_label_thresholds_are_applied_and_reported():
    m = multilabel_metrics(Y, P, [0.95, 0.3, 0.35], NAMES)
    # a: nothing predicted -> precision 0 (zero division), recall 0; b: .7 and .4 -> perfect; c: .4 and .6.
    assert m["per_label"]["a"]["predicted"] == 0
    assert m["per_label"]["b"]["f1"] == pytest.approx(1.0)
    assert m["per_label"]["c"]["precision"] == pytest.approx(0.5)
    assert m["thresholds"] == [0.95, 0.3, 0.35]
    assert m["per_label"]["c"]["threshold"] == 0.35


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        multilabel_metrics(Y, P[:, :2], 0.5)


def test_format_table_shows_na_for_undefined():
    text = format_table({"validation @ 0.5": {"samples_jaccard": 0.5, "macro_roc_auc": None}}, ["samples_jaccard", "macro_roc_auc"])
    assert "0.5000" in text and "n/a" in text and not math.isnan(0.5)
