"""PRD (prototype-sample relation distillation) on split digits (5 tasks x 2 classes).

Measured with the default settings (``PRD_CONFIG``, learner seed = class-order seed), R
summarised by ``metrics.summary``: average accuracy / forgetting 0.892 / 0.065 (seed 0),
0.825 / 0.113 (seed 1), 0.869 / 0.060 (seed 2); with distillation off (``distill_coef=0``)
0.844 / 0.130 on seed 0. The issue's floor (>= 0.80, forgetting <= 0.20, no stored samples) is
asserted on seed 0, and the worst of the three seeds against 0.78 / 0.20.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from components.continual.metrics import summary
from components.continual.prd import PRD_CONFIG, PRDLearner, supcon_loss
from components.continual.scenarios import class_incremental
from components.continual.stream import learn_stream

SEEDS = (0, 1, 2)


def run_stream(learner, digits, seed):
    """R and the per-task records of ``learner`` on split digits in class order ``seed``."""
    return learn_stream(learner, digits, class_incremental(digits[1], 5, seed=seed))


@pytest.fixture(scope="module")
def streams(digits):
    """R, records and learner per seed (default settings), plus seed 0 without distillation."""
    runs = {}
    for seed in SEEDS:
        config = dataclasses.replace(PRD_CONFIG, seed=seed)
        learner = PRDLearner(config)
        runs[seed] = (*run_stream(learner, digits, seed), learner)
    learner = PRDLearner(distill_coef=0.0)
    runs["no_distill"] = (*run_stream(learner, digits, 0), learner)
    return runs


def test_meets_the_issue_floor_on_seed_0(streams):
    s = summary(streams[0][0])
    assert s["average_accuracy"] >= 0.80  # measured 0.892
    assert s["forgetting"] <= 0.20  # measured 0.065


def test_worst_seed_stays_near_the_floor(streams):
    stats = [summary(streams[seed][0]) for seed in SEEDS]
    # measured 0.892 / 0.825 / 0.869 and forgetting 0.065 / 0.113 / 0.060
    assert min(s["average_accuracy"] for s in stats) >= 0.78
    assert max(s["forgetting"] for s in stats) <= 0.20


def test_distillation_is_zero_on_the_first_task_and_positive_later(streams):
    records = streams[0][1]
    assert records[0]["distill_loss"] == 0.0  # no old classes yet
    assert all(r["distill_loss"] > 0.0 for r in records[1:])
    assert all(r["supcon_loss"] > 0.0 and r["prototype_loss"] > 0.0 for r in records)


def test_distillation_reduces_forgetting(streams):
    with_d, without_d = summary(streams[0][0]), summary(streams["no_distill"][0])
    # measured forgetting 0.065 vs 0.130, accuracy 0.892 vs 0.844
    assert with_d["forgetting"] + 0.03 <= without_d["forgetting"]
    assert with_d["average_accuracy"] >= without_d["average_accuracy"]


def test_predictions_stay_within_seen_classes(streams, digits):
    x_train, y_train, x_test, y_test = digits
    assert set(streams[0][2].predict(x_test)) <= set(range(10))
    tasks = class_incremental(y_train, 5, seed=0)
    learner = PRDLearner()
    idx = tasks[0].indices
    learner.learn_task(x_train[idx], y_train[idx], tasks[0].classes)
    assert set(learner.predict(x_test)) <= set(tasks[0].classes)
    R_row = learner.evaluate(tasks, x_test, y_test)
    assert R_row[0] >= 0.9 and np.all(R_row[1:] == 0.0)


def test_schedule_drives_every_param_group(streams):
    learner = streams[0][2]
    groups = learner.optimizer.param_groups
    assert len(groups) == 3  # network, projection head, prototypes
    for group in groups:  # after the stream's last step: the constant phase, in every group
        assert group["lr"] == pytest.approx(PRD_CONFIG.const_lr)
    for record in streams[0][1]:
        assert record["lr_last"] == pytest.approx(PRD_CONFIG.min_lr)


def test_picklable_and_deterministic(streams, digits):
    learner = streams[0][2]
    x_test = digits[2]
    clone = pickle.loads(pickle.dumps(learner))
    assert np.array_equal(clone.predict(x_test), learner.predict(x_test))
    assert clone.method == "prd"
    assert PRDLearner.DEFAULT_CONFIG == PRD_CONFIG == dataclasses.replace(learner.config, seed=0)


def test_supcon_loss_prefers_clustered_classes():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    mixed = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    good, bad = supcon_loss(clustered, labels, 0.1), supcon_loss(mixed, labels, 0.1)
    assert good < 1e-3 < bad


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"supcon_temperature": 0.0}, "supcon_temperature"),
        ({"prototype_temperature": -1.0}, "prototype_temperature"),
        ({"distill_temperature": float("nan")}, "distill_temperature"),
        ({"prototype_coef": 0.0}, "prototype_coef"),
        ({"supcon_coef": -0.1}, "supcon_coef"),
        ({"distill_coef": -1.0}, "distill_coef"),
        ({"noise_std": -0.5}, "noise_std"),
        ({"projection_dim": 0}, "projection_dim"),
        ({"max_shift": 8}, "max_shift"),
        ({"max_shift": 0.5}, "max_shift"),
    ],
)
def test_bad_kwargs_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PRDLearner(**kwargs)
