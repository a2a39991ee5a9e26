"""Continual metrics against hand-computed accuracy matrices."""

from __future__ import annotations

import numpy as np
import pytest

from components.continual.metrics import (
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    summary,
)

# R[1, 0] > R[0, 0] makes max-based forgetting differ from -BWT.
R3 = np.array(
    [
        [0.90, 0.10, 0.20],
        [0.95, 0.80, 0.30],
        [0.50, 0.70, 0.95],
    ]
)
B3 = np.array([0.1, 0.1, 0.1])


def test_hand_computed_3x3():
    assert average_accuracy(R3) == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    # steps: 0.9, (0.95 + 0.8) / 2, (0.5 + 0.7 + 0.95) / 3
    assert average_incremental_accuracy(R3) == pytest.approx((0.9 + 0.875 + 2.15 / 3) / 3)
    assert backward_transfer(R3) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert forward_transfer(R3, B3) == pytest.approx(((0.1 - 0.1) + (0.3 - 0.1)) / 2)
    assert forgetting(R3) == pytest.approx(((0.95 - 0.5) + (0.8 - 0.7)) / 2)


@pytest.mark.parametrize("T", [2, 5])
def test_finetune_forgets_everything(T):
    R = np.eye(T)  # perfect on the current task, zero on all old ones
    assert forgetting(R) == pytest.approx(1.0)
    assert backward_transfer(R) == pytest.approx(-1.0)
    assert average_accuracy(R) == pytest.approx(1.0 / T)


def test_joint_like_forgets_nothing():
    R = np.tril(np.ones((5, 5)))  # every seen task perfect, unseen ones zero
    s = summary(R, baseline=np.zeros(5))
    assert s["forgetting"] == pytest.approx(0.0)
    assert s["backward_transfer"] == pytest.approx(0.0)
    assert s["average_accuracy"] == pytest.approx(1.0)
    assert s["average_incremental_accuracy"] == pytest.approx(1.0)
    assert s["forward_transfer"] == pytest.approx(0.0)
    assert s["num_tasks"] == 5


def test_summary_marks_undefined_metrics_none():
    s = summary(R3)
    assert s["forward_transfer"] is None
    assert s["forgetting"] == pytest.approx(forgetting(R3))
    one = summary(np.array([[0.7]]))
    assert one["average_accuracy"] == pytest.approx(0.7)
    assert one["backward_transfer"] is None and one["forgetting"] is None


@pytest.mark.parametrize(
    ("R", "match"),
    [
        (np.ones((2, 3)), "square"),
        (np.ones(3), "square"),
        (np.full((2, 2), 1.5), r"\[0, 1\]"),
        (np.full((2, 2), -0.1), r"\[0, 1\]"),
        (np.array([[np.nan, 0.0], [0.0, 1.0]]), "finite"),
    ],
)
def test_bad_matrix_raises(R, match):
    with pytest.raises(ValueError, match=match):
        summary(R)


@pytest.mark.parametrize("metric", [backward_transfer, forgetting])
def test_single_task_raises(metric):
    with pytest.raises(ValueError, match="at least 2 tasks"):
        metric(np.array([[0.5]]))


def test_forward_transfer_checks_baseline():
    with pytest.raises(ValueError, match="baseline"):
        forward_transfer(R3, np.zeros(2))
    with pytest.raises(ValueError, match="baseline"):
        forward_transfer(R3, np.full(3, 2.0))
