"""mlb-eval's library: metrics against hand-computed values, label matching by name, the table and JSON."""

from __future__ import annotations

import numpy as np
import pytest

from mlbert.errors import InputError
from mlbert.preprocess import Preprocessing
from mlbert.trainer.evaluate import EvalModel, Evaluation, align_labels, evaluate_arrays, format_report, to_json

NAMES = ["a", "b", "c"]
Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32)
P = np.array([[0.9, 0.2, 0.4], [0.3, 0.6, 0.1], [0.7, 0.45, 0.2], [0.1, 0.3, 0.8]], dtype=np.float32)
THRESHOLDS = [0.5, 0.4, 0.3]


def _model(names=NAMES, thresholds=THRESHOLDS, path="m.onnx", probabilities=P) -> EvalModel:
    return EvalModel(path=path, kind="onnx", label_names=list(names), thresholds=list(thresholds),
                     preprocessing=Preprocessing(), max_length=16,
                     predict_proba=lambda texts: probabilities[: len(texts)])


def test_metrics_at_model_thresholds_and_at_half_match_hand_computed_values():
    m = evaluate_arrays(Y, P, NAMES, THRESHOLDS)
    # At 0.5 the predictions are [1,0,0] [0,1,0] [1,0,0] [0,0,1].
    half = m["0.5"]
    assert half["samples_jaccard"] == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    assert half["exact_match"] == pytest.approx(0.25)
    assert half["micro_f1"] == pytest.approx(6 / 9)  # TP 3, FP 1, FN 2
    assert half["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert half["per_label"]["b"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "predicted": 1, "roc_auc": 1.0, "threshold": 0.5})
    # At [0.5, 0.4, 0.3] the predictions are [1,0,1] [0,1,0] [1,1,0] [0,0,1].
    tuned = m["model"]
    assert tuned["samples_jaccard"] == pytest.approx(0.75)
    assert tuned["exact_match"] == pytest.approx(0.75)
    assert tuned["micro_f1"] == pytest.approx(10 / 11)  # TP 5, FP 1, FN 0
    assert tuned["macro_f1"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert tuned["per_label"]["c"]["precision"] == pytest.approx(0.5)
    assert tuned["per_label"]["c"]["recall"] == pytest.approx(1.0)
    # ROC-AUC does not depend on thresholds: label c ranks its positive (0.4) above 2 of 3 negatives;
    # micro: 31 of the 35 positive/negative pairs are ordered correctly.
    for setting in ("0.5", "model"):
        assert m[setting]["macro_roc_auc"] == pytest.approx((1 + 1 + 2 / 3) / 3)
        assert m[setting]["micro_roc_auc"] == pytest.approx(31 / 35)


def test_align_labels_reorders_data_columns_by_name():
    data_names = ["c", "a", "b"]
    data = Y[:, [2, 0, 1]]
    assert np.array_equal(align_labels(data_names, data, _model(), "d.csv"), Y)


def test_align_labels_lists_both_differences():
    with pytest.raises(InputError) as info:
        align_labels(["a", "b", "x"], Y, _model(), "d.csv")
    message = str(info.value)
    assert message.startswith("d.csv: labels do not match m.onnx")
    assert "missing from the data: c" in message and "the model does not know: x" in message
    assert "\n" not in message


def _evaluation(model: EvalModel, probabilities=P) -> Evaluation:
    return Evaluation(model, "d.csv", Y, probabilities, evaluate_arrays(Y, probabilities, model.label_names, model.thresholds))


def test_table_shows_both_settings_and_per_label_rows():
    table = format_report([_evaluation(_model())])
    lines = table.splitlines()
    jaccard = next(line for line in lines if line.startswith("samples Jaccard")).split()
    assert jaccard[-2:] == ["0.7500", "0.5000"]
    micro = next(line for line in lines if line.startswith("micro-F1")).split()
    assert micro[-2:] == [f"{10 / 11:.4f}", f"{6 / 9:.4f}"]
    row_c = next(line for line in lines if line.startswith("c ")).split()
    # label, support, threshold, precision, recall, F1, ROC-AUC, F1 at 0.5
    assert row_c == ["c", "1", "0.3000", "0.5000", "1.0000", "0.6667", "0.6667", "0.0000"]


def test_two_models_table_and_json_carry_deltas():
    worse = P.copy()
    worse[:, 2] = 1 - worse[:, 2]  # label c ranked backwards
    a = _evaluation(_model())
    b = _evaluation(_model(path="b.onnx", probabilities=worse), worse)
    table = format_report([a, b])
    assert "A: m.onnx" in table and "B: b.onnx" in table
    auc_row = next(line for line in table.splitlines() if line.startswith("macro ROC-AUC")).split()
    expected = (1 + 1 + 1 / 3) / 3 - (1 + 1 + 2 / 3) / 3
    assert auc_row[4] == f"{expected:+.4f}"
    data = to_json([a, b])
    assert [m["path"] for m in data["models"]] == ["m.onnx", "b.onnx"]
    assert data["deltas_b_minus_a"]["at_model_thresholds"]["macro_roc_auc"] == pytest.approx(expected)
    assert data["deltas_b_minus_a"]["at_0.5"]["per_label_f1"]["a"] == pytest.approx(0.0)
    assert data["models"][0]["at_model_thresholds"]["samples_jaccard"] == pytest.approx(0.75)
    assert data["rows"] == 4 and data["label_names"] == NAMES
