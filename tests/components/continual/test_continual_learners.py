"""Baseline class-incremental learners on split digits (5 tasks x 2 classes, class order seed 0).

Measured with the default ``LearnerConfig`` (seed 0), R summarised by ``metrics.summary``:
finetune forgets (max-based forgetting 0.99, final average accuracy 0.19), joint reaches 0.98,
and the default NCM (embedding trained on the first task, frozen) forgets little (0.05) but
reaches only 0.44: the issue's 0.80 floor for ``ncm`` is not met (strict xfail below).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from components.continual.learners import (
    METHODS,
    LearnerConfig,
    NCMLearner,
    make_learner,
)
from components.continual.metrics import summary
from components.continual.scenarios import class_incremental
from components.data.reader import read_split

CONFIG = LearnerConfig()


@pytest.fixture(scope="module")
def split_digits(digits_dataset):
    x_train, y_train = read_split(digits_dataset, "train")
    x_test, y_test = read_split(digits_dataset, "test")
    tasks = class_incremental(y_train, 5, seed=0)
    return x_train, y_train, x_test, y_test, tasks


def run_stream(learner, data):
    """Train on every task in order; return the accuracy matrix R and the per-task records."""
    x_train, y_train, x_test, y_test, tasks = data
    R = np.zeros((len(tasks), len(tasks)))
    records = []
    for i, task in enumerate(tasks):
        idx = task.indices
        records.append(learner.learn_task(x_train[idx], y_train[idx], task.classes))
        R[i] = learner.evaluate(tasks, x_test, y_test)
    return R, records


@pytest.fixture(scope="module")
def streams(split_digits):
    """R, records and the learner of each method (and NCM variant), trained once per module."""
    runs = {}
    for name, learner in {
        "finetune": make_learner("finetune", CONFIG),
        "joint": make_learner("joint", CONFIG),
        "ncm": make_learner("ncm", CONFIG),
        "ncm_every": make_learner("ncm", CONFIG, train_embedding="every"),
    }.items():
        R, records = run_stream(learner, split_digits)
        runs[name] = (R, records, learner)
    return runs


def test_finetune_forgets(streams):
    R, _, _ = streams["finetune"]
    s = summary(R)
    assert s["forgetting"] >= 0.8  # measured 0.991
    assert np.diag(R).min() >= 0.9  # each task is learned when it is current
    assert s["average_accuracy"] <= 0.3  # measured 0.192: only the last task survives


def test_joint_is_the_upper_bound(streams):
    s = summary(streams["joint"][0])
    assert s["average_accuracy"] >= 0.95  # measured 0.981
    assert s["forgetting"] <= 0.05  # measured 0.005


def test_ncm_forgets_little(streams):
    s = summary(streams["ncm"][0])
    assert s["forgetting"] <= 0.20  # measured 0.051
    # measured 0.441 (vs finetune 0.192): well above finetune, far below the issue's 0.80
    assert s["average_accuracy"] >= summary(streams["finetune"][0])["average_accuracy"] + 0.15


@pytest.mark.xfail(
    strict=True,
    reason="issue 6 asks ncm >= 0.80; an embedding learned on a 2-class first task reaches 0.44",
)
def test_ncm_reaches_the_issue_floor(streams):
    assert summary(streams["ncm"][0])["average_accuracy"] >= 0.80


def test_ncm_trained_on_every_task_drifts(streams):
    # stale class means under a moving embedding: forgetting much worse than the frozen variant
    drifting, frozen = summary(streams["ncm_every"][0]), summary(streams["ncm"][0])
    assert drifting["forgetting"] >= frozen["forgetting"] + 0.3


def test_infinite_schedule_never_rewarms(streams):
    for name in ("finetune", "joint", "ncm_every"):
        _, records, _ = streams[name]
        assert records[0]["lr_max"] == pytest.approx(CONFIG.max_lr)  # warm-up once
        for rec in records:
            assert rec["lr_last"] == pytest.approx(CONFIG.min_lr)  # every task anneals
        for rec in records[1:]:
            assert rec["lr_max"] == pytest.approx(CONFIG.const_lr)  # later tasks: constant
    ncm_records = streams["ncm"][1]
    assert all(np.isnan(r["lr_max"]) for r in ncm_records[1:])  # frozen after the first task


def test_predictions_stay_within_seen_classes(streams, split_digits):
    _, _, x_test, _, tasks = split_digits
    for name in ("finetune", "ncm"):
        learner = streams[name][2]
        assert set(learner.predict(x_test)) <= set(learner.seen)
    learner = make_learner("finetune", CONFIG)
    x_train, y_train = split_digits[0], split_digits[1]
    learner.learn_task(x_train[tasks[0].indices], y_train[tasks[0].indices], tasks[0].classes)
    assert set(learner.predict(x_test)) <= set(tasks[0].classes)
    R_row = learner.evaluate(tasks, x_test, split_digits[3])
    assert R_row.shape == (5,) and np.all(R_row[1:] == 0.0)  # unseen classes never predicted


def test_ncm_prototypes_are_the_per_class_embedding_sums(streams, split_digits):
    x_train, y_train, _, _, tasks = split_digits
    learner: NCMLearner = streams["ncm"][2]
    sums, counts = learner.prototypes()
    assert np.array_equal(counts, np.bincount(y_train, minlength=10))
    z = learner.embed(x_train)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    for c in range(10):  # frozen embedding: the means equal those recomputed now
        np.testing.assert_allclose(sums[c], z[y_train == c].sum(0), rtol=1e-6, atol=1e-8)


def test_same_seed_same_result_and_picklable(split_digits):
    x_train, y_train, x_test, _, tasks = split_digits
    idx = tasks[0].indices
    preds = []
    for _ in range(2):
        learner = make_learner("finetune", CONFIG)
        learner.learn_task(x_train[idx], y_train[idx], tasks[0].classes)
        preds.append(learner.predict(x_test))
    assert np.array_equal(*preds)
    clone = pickle.loads(pickle.dumps(learner))
    assert np.array_equal(clone.predict(x_test), preds[0])
    assert pickle.loads(pickle.dumps(CONFIG)) == CONFIG


def test_bad_inputs_are_rejected(split_digits):
    x_train, y_train, _, _, tasks = split_digits
    idx = tasks[0].indices
    learner = make_learner("joint", CONFIG)
    with pytest.raises(RuntimeError):
        learner.predict(x_train[:3])
    with pytest.raises(ValueError, match="not in"):
        learner.learn_task(x_train[idx], y_train[idx], tasks[1].classes)
    with pytest.raises(ValueError, match="features"):
        learner.learn_task(x_train[idx, :, :4], y_train[idx], tasks[0].classes)
    with pytest.raises(ValueError, match="too short"):
        make_learner("finetune", CONFIG).learn_task(
            x_train[idx][:5], y_train[idx][:5], tasks[0].classes
        )
    with pytest.raises(ValueError, match="unknown method"):
        make_learner("ewc")
    with pytest.raises(ValueError, match="train_embedding"):
        make_learner("ncm", train_embedding="sometimes")
    assert set(METHODS) == {"finetune", "joint", "ncm"}
