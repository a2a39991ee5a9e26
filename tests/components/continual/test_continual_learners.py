"""Baseline class-incremental learners on split digits (5 tasks x 2 classes, class order seed 0).

Measured with the default ``LearnerConfig`` (seed 0), R summarised by ``metrics.summary``:
finetune forgets (max-based forgetting 0.99, final average accuracy 0.19), joint reaches 0.98,
and NCM on an embedding trained on the first task then frozen (``train_embedding="first"``)
forgets little (0.05) but reaches only 0.44. The default NCM (embedding learned on every task as
an autoencoder's encoder with embedding distillation, ``NCMLearner.DEFAULT_CONFIG``) meets the
issue's floor: 0.888 average accuracy, forgetting 0.046 (seeds 1 / 2 of the config and class
order: 0.862 / 0.877, forgetting 0.061 / 0.037; with ``LearnerConfig()``: 0.821 / 0.821 / 0.799).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from components.continual.learners import LearnerConfig, NCMLearner
from components.continual.metrics import summary
from components.continual.scenarios import class_incremental
from components.continual.stream import METHODS, create_learner, learn_stream

CONFIG = LearnerConfig()


@pytest.fixture(scope="module")
def split_digits(digits):
    return (*digits, class_incremental(digits[1], 5, seed=0))


def run_stream(learner, data):
    """Train on every task in order; return the accuracy matrix R and the per-task records."""
    return learn_stream(learner, data[:4], data[4])


@pytest.fixture(scope="module")
def streams(split_digits):
    """R, records and the learner of each method (and NCM variant), trained once per module."""
    runs = {}
    for name, learner in {
        "finetune": create_learner("finetune", CONFIG),
        "joint": create_learner("joint", CONFIG),
        "ncm": create_learner("ncm"),  # its defaults, DEFAULT_CONFIG included
        "ncm_first": create_learner("ncm", CONFIG, train_embedding="first"),
        "ncm_every": create_learner("ncm", CONFIG, train_embedding="every"),
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


def test_ncm_frozen_after_the_first_task_forgets_little(streams):
    s = summary(streams["ncm_first"][0])
    assert s["forgetting"] <= 0.20  # measured 0.051
    # measured 0.441 (vs finetune 0.192): well above finetune, far below the issue's 0.80
    assert s["average_accuracy"] >= summary(streams["finetune"][0])["average_accuracy"] + 0.15


def test_ncm_reaches_the_issue_floor(streams):
    s = summary(streams["ncm"][0])
    assert s["average_accuracy"] >= 0.80  # measured 0.888 (seeds 1, 2: 0.862, 0.877)
    assert s["forgetting"] <= 0.20  # measured 0.046 (seeds 1, 2: 0.061, 0.037)


def test_ncm_default_embedding_is_learned(streams):
    learner: NCMLearner = streams["ncm"][2]
    fresh = NCMLearner()  # same seed, untrained
    assert learner.train_embedding == "reconstruct" and learner.counts.sum() > 0
    pairs = zip(learner.net.body.parameters(), fresh.net.body.parameters(), strict=True)
    for trained, init in pairs:
        assert not np.allclose(trained.detach().numpy(), init.detach().numpy())
    assert learner._teacher is None  # the frozen copy is dropped after each task


def test_ncm_trained_on_every_task_drifts(streams):
    # stale class means under a moving embedding: forgetting much worse than the frozen variant
    drifting, frozen = summary(streams["ncm_every"][0]), summary(streams["ncm_first"][0])
    assert drifting["forgetting"] >= frozen["forgetting"] + 0.3


def test_infinite_schedule_never_rewarms(streams):
    for name in ("finetune", "joint", "ncm_every"):
        _, records, _ = streams[name]
        assert records[0]["lr_max"] == pytest.approx(CONFIG.max_lr)  # warm-up once
        for rec in records:
            assert rec["lr_last"] == pytest.approx(CONFIG.min_lr)  # every task anneals
        for rec in records[1:]:
            assert rec["lr_max"] == pytest.approx(CONFIG.const_lr)  # later tasks: constant
    ncm_records = streams["ncm_first"][1]
    assert all(np.isnan(r["lr_max"]) for r in ncm_records[1:])  # frozen after the first task
    for rec in streams["ncm"][1]:  # the default NCM trains (and anneals) at every task
        assert rec["lr_last"] == pytest.approx(NCMLearner.DEFAULT_CONFIG.min_lr)


def test_predictions_stay_within_seen_classes(streams, split_digits):
    _, _, x_test, _, tasks = split_digits
    for name in ("finetune", "ncm"):
        learner = streams[name][2]
        assert set(learner.predict(x_test)) <= set(learner.seen)
    learner = create_learner("finetune", CONFIG)
    x_train, y_train = split_digits[0], split_digits[1]
    learner.learn_task(x_train[tasks[0].indices], y_train[tasks[0].indices], tasks[0].classes)
    assert set(learner.predict(x_test)) <= set(tasks[0].classes)
    R_row = learner.evaluate(tasks, x_test, split_digits[3])
    assert R_row.shape == (5,) and np.all(R_row[1:] == 0.0)  # unseen classes never predicted


def test_ncm_prototypes_are_the_per_class_embedding_sums(streams, split_digits):
    x_train, y_train, _, _, tasks = split_digits
    for name, classes in (("ncm_first", range(10)), ("ncm", tasks[-1].classes)):
        learner: NCMLearner = streams[name][2]
        sums, counts = learner.prototypes()
        assert np.array_equal(counts, np.bincount(y_train, minlength=10))
        z = learner.embed(x_train)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        # embedding unchanged since these classes' task: their sums equal those recomputed now
        for c in classes:
            np.testing.assert_allclose(sums[c], z[y_train == c].sum(0), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(learner.class_means() * counts[:, None], sums, atol=1e-12)


def test_same_seed_same_result_and_picklable(split_digits):
    x_train, y_train, x_test, _, tasks = split_digits
    idx = tasks[0].indices
    preds = []
    for _ in range(2):
        learner = create_learner("finetune", CONFIG)
        learner.learn_task(x_train[idx], y_train[idx], tasks[0].classes)
        preds.append(learner.predict(x_test))
    assert np.array_equal(*preds)
    clone = pickle.loads(pickle.dumps(learner))
    assert np.array_equal(clone.predict(x_test), preds[0])
    assert pickle.loads(pickle.dumps(CONFIG)) == CONFIG


def test_bad_inputs_are_rejected(split_digits):
    x_train, y_train, _, _, tasks = split_digits
    idx = tasks[0].indices
    learner = create_learner("joint", CONFIG)
    with pytest.raises(RuntimeError):
        learner.predict(x_train[:3])
    with pytest.raises(ValueError, match="not in"):
        learner.learn_task(x_train[idx], y_train[idx], tasks[1].classes)
    with pytest.raises(ValueError, match="features"):
        learner.learn_task(x_train[idx, :, :4], y_train[idx], tasks[0].classes)
    with pytest.raises(ValueError, match="too short"):
        create_learner("finetune", CONFIG).learn_task(
            x_train[idx][:5], y_train[idx][:5], tasks[0].classes
        )
    with pytest.raises(ValueError, match="unknown continual method"):
        create_learner("ewc")
    with pytest.raises(ValueError, match="train_embedding"):
        create_learner("ncm", train_embedding="sometimes")
    with pytest.raises(ValueError, match="distill_weight"):
        create_learner("ncm", distill_weight=-1.0)
    assert set(METHODS) == {"finetune", "joint", "ncm", "prd", "napa_vq", "protocl"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0, "batch_size": 0}, "epochs=0 (must be >= 1); batch_size=0 (must be >= 1)"),
        ({"momentum": 1.5}, "momentum=1.5 (must be in [0, 1))"),
        ({"weight_decay": -1e-4}, "weight_decay=-0.0001 (must be >= 0)"),
        ({"max_lr": -1.0}, "need 0 < min_lr <= const_lr <= max_lr, got min_lr=0.001"),
    ],
)
def test_a_learner_config_names_each_bad_value(values, message):
    # it printed the whole config; a negative max_lr surfaced later as the optimiser's error
    with pytest.raises(ValueError) as refused:
        LearnerConfig(**values)
    assert str(refused.value).startswith(message)
