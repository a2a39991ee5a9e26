"""Metrics against closed-form answers, hand-worked examples and scikit-learn."""

import json
import math

import numpy as np
import pytest
import sklearn.metrics
import torch

from components.evaluation.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    macro_f1,
    nll,
    per_class_accuracy,
    reliability_bins,
)

# Hand-worked 2-bin example: bin (0, 0.5] holds two samples of confidence 0.4, one correct
# (gap |0.5 - 0.4| = 0.1); bin (0.5, 1] holds confidences 0.9 and 0.7, both correct
# (gap |1.0 - 0.8| = 0.2). ECE = 2/4 * 0.1 + 2/4 * 0.2 = 0.15.
TWO_BIN_PROBS = np.array(
    [[0.4, 0.3, 0.3], [0.4, 0.3, 0.3], [0.9, 0.05, 0.05], [0.7, 0.2, 0.1]], dtype=np.float64
)
TWO_BIN_Y = np.array([0, 1, 0, 0])


def test_accuracy_accepts_logits_probabilities_and_labels():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0], [0.0, 5.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, y) == pytest.approx(0.75)
    assert accuracy(torch.softmax(logits, 1).numpy(), y.numpy()) == pytest.approx(0.75)
    assert accuracy(np.array([0, 1, 0, 0]), [0, 1, 1, 1]) == pytest.approx(0.5)


def test_nll_of_uniform_logits_is_log_num_classes():
    logits = np.zeros((7, 5))
    assert nll(logits, np.arange(7) % 5) == pytest.approx(math.log(5))


def test_nll_hand_computed_and_shift_invariant():
    # softmax([0, ln 3]) = [1/4, 3/4]
    logits = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    expected = -(math.log(0.75) + math.log(0.25)) / 2
    assert nll(logits, [1, 0]) == pytest.approx(expected)
    assert nll(logits + 1000.0, [1, 0]) == pytest.approx(expected)  # no overflow


def test_ece_is_zero_when_every_bin_is_calibrated():
    # 10 samples at confidence 0.8 with 8 correct, 5 at 0.6 with 3 correct
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 5)
    y = np.array([0] * 8 + [1] * 2 + [0] * 3 + [1] * 2)
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_worked_two_bins():
    assert expected_calibration_error(TWO_BIN_PROBS, TWO_BIN_Y, n_bins=2) == pytest.approx(0.15)


def test_reliability_bins_hand_worked_two_bins():
    bins = reliability_bins(TWO_BIN_PROBS, TWO_BIN_Y, n_bins=2)
    assert bins["confidence"] == pytest.approx([0.4, 0.8])
    assert bins["accuracy"] == pytest.approx([0.5, 1.0])
    assert bins["count"] == [2, 2]
    assert bins["edges"] == pytest.approx([0.0, 0.5, 1.0])


def test_reliability_bins_are_right_closed_and_mark_empty_bins():
    # confidence exactly 0.5 belongs to (0, 0.5] (Guo et al.'s ((m-1)/M, m/M]); bin 2 is empty
    bins = reliability_bins(np.array([[0.5, 0.5], [0.5, 0.5]]), [0, 0], n_bins=2)
    assert bins["count"] == [2, 0]
    assert bins["accuracy"] == [1.0, None]
    json.dumps(bins, allow_nan=False)


def test_ece_rejects_rows_that_are_not_probabilities():
    with pytest.raises(ValueError, match="probability"):
        expected_calibration_error(np.array([[2.0, -1.0]]), [0])


@pytest.mark.parametrize("num_classes", [2, 5])
def test_macro_f1_and_confusion_matrix_match_sklearn(num_classes):
    rng = np.random.default_rng(num_classes)
    y = rng.integers(0, num_classes, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, num_classes, 200))
    assert macro_f1(pred, y, num_classes) == pytest.approx(
        sklearn.metrics.f1_score(y, pred, average="macro")
    )
    np.testing.assert_array_equal(
        confusion_matrix(pred, y, num_classes),
        sklearn.metrics.confusion_matrix(y, pred, labels=range(num_classes)),
    )


def test_macro_f1_skips_classes_absent_from_labels_and_predictions():
    y, pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    # class 2 never occurs: averaging over classes 0 and 1 only, like sklearn's default
    assert macro_f1(pred, y, num_classes=3) == pytest.approx(
        sklearn.metrics.f1_score(y, pred, average="macro")
    )


def test_per_class_accuracy_is_recall_and_nan_for_empty_class():
    y, pred = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 0])
    values = per_class_accuracy(pred, y, num_classes=3)
    assert values[:2] == pytest.approx([2 / 3, 0.0])
    assert math.isnan(values[2])


def test_classification_metrics_is_json_serialisable_and_consistent():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 4)) + 3 * np.eye(4)[y]  # class 3 has no samples
    metrics = classification_metrics(torch.from_numpy(logits), torch.from_numpy(y), 4, n_bins=5)
    json.dumps(metrics, allow_nan=False)
    pred = logits.argmax(1)
    assert metrics["accuracy"] == pytest.approx(np.mean(pred == y))
    assert metrics["nll"] == pytest.approx(nll(logits, y))
    assert metrics["per_class_accuracy"][3] is None
    assert np.sum(metrics["confusion_matrix"]) == metrics["num_samples"] == 60
    assert sum(metrics["reliability"]["count"]) == 60
    assert len(metrics["reliability"]["edges"]) == 6


def test_bad_labels_are_named_in_the_error():
    with pytest.raises(ValueError, match=r"y: class indices must lie in \[0, 3\)"):
        confusion_matrix([0, 1], [0, 3], num_classes=3)
    with pytest.raises(ValueError, match="rows"):
        accuracy(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="expected 4 columns"):
        classification_metrics(np.zeros((2, 3)), [0, 1], num_classes=4)
    with pytest.raises(ValueError, match="NaN"):
        nll(np.array([[np.nan, 0.0]]), [0])
