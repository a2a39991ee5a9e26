"""ProtoCL on split digits (5 tasks x 2 classes) and its conjugate posterior.

Measured with the defaults (``ProtoCLLearner.DEFAULT_CONFIG``, no coreset), class order and
config seed 0 / 1 / 2: final average accuracy 0.896 / 0.899 / 0.907, forgetting 0.074 / 0.042 /
0.051. Without the embedding distillation (``distill_weight=0``, plain ProtoCL without a coreset)
the embedding drifts and old classes are forgotten: 0.352 / 0.233 / 0.348, forgetting 0.81 / 0.95
/ 0.82.
"""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest
import torch

from components.continual.metrics import summary
from components.continual.protocl import GaussianDirichletPosterior, ProtoCLLearner, log_joint
from components.continual.scenarios import class_incremental
from components.continual.stream import learn_stream

SEEDS = (0, 1, 2)
WORST_SEED_FLOOR = 0.78  # the issue's 0.80 on seed 0; slightly lower for the worst of 3 seeds


def run_stream(learner, digits, seed):
    """R and the tasks of ``learner`` on split digits in class order ``seed``."""
    tasks = class_incremental(digits[1], 5, seed=seed)
    return learn_stream(learner, digits, tasks)[0], tasks


def default_learner(seed: int) -> ProtoCLLearner:
    return ProtoCLLearner(dataclasses.replace(ProtoCLLearner.DEFAULT_CONFIG, seed=seed))


@pytest.fixture(scope="module")
def streams(digits):
    """R, tasks and learner of the default ProtoCL for each seed (config and class order)."""
    out = {}
    for seed in SEEDS:
        learner = ProtoCLLearner() if seed == 0 else default_learner(seed)
        R, tasks = run_stream(learner, digits, seed)
        out[seed] = (R, tasks, learner)
    return out


def test_protocl_reaches_the_issue_floor(streams):
    s = summary(streams[0][0])
    assert s["average_accuracy"] >= 0.80  # measured 0.896
    assert s["forgetting"] <= 0.20  # measured 0.074
    worst = [summary(streams[seed][0]) for seed in SEEDS]
    assert min(w["average_accuracy"] for w in worst) >= WORST_SEED_FLOOR  # measured 0.896
    assert max(w["forgetting"] for w in worst) <= 0.20  # measured 0.074


def test_plain_protocl_without_coreset_forgets(digits):
    R, _ = run_stream(ProtoCLLearner(distill_weight=0.0), digits, 0)
    s = summary(R)
    assert np.diag(R).min() >= 0.9  # each task learned when current
    assert s["forgetting"] >= 0.5  # measured 0.81: the embedding drifts, old posteriors go stale


def test_closed_form_posterior_on_a_hand_built_example():
    post = GaussianDirichletPosterior(
        3, 2, obs_var=0.5, prior_precision=2.0, prior_mean=1.0, dirichlet_concentration=0.5
    )
    post.update(np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]), np.array([0, 0, 2]))
    # class 0: l = 2 + 2 / 0.5 = 6, m = (2 * 1 + [4, 6] / 0.5) / 6
    np.testing.assert_allclose(post.precision(), [6.0, 2.0, 4.0])
    np.testing.assert_allclose(post.mean()[0], [10 / 6, 14 / 6])
    np.testing.assert_allclose(post.mean()[1], [1.0, 1.0])  # no data: the prior mean
    np.testing.assert_allclose(post.mean()[2], [2 / 4, 2 / 4])
    np.testing.assert_allclose(post.predictive_var(), [1 / 6 + 0.5, 1 / 2 + 0.5, 1 / 4 + 0.5])
    np.testing.assert_allclose(post.concentration(), [2.5, 0.5, 1.5])
    z = np.array([[0.5, -1.0]])
    got = log_joint(
        *(
            torch.from_numpy(a)
            for a in (z, post.mean(), post.predictive_var(), post.concentration())
        )
    ).numpy()
    for c in range(3):
        v, m = post.predictive_var()[c], post.mean()[c]
        log_normal = -0.5 * (((z[0] - m) ** 2).sum() / v + 2 * math.log(2 * math.pi * v))
        assert got[0, c] == pytest.approx(log_normal + math.log(post.concentration()[c] / 4.5))


def test_two_disjoint_updates_equal_the_one_shot_posterior():
    rng = np.random.default_rng(0)
    z1, y1 = rng.normal(size=(40, 5)), rng.integers(0, 2, 40)
    z2, y2 = rng.normal(size=(30, 5)), rng.integers(2, 4, 30)
    kwargs = dict(obs_var=0.05, prior_precision=1.0, prior_mean=0.3)
    sequential = GaussianDirichletPosterior(4, 5, **kwargs)
    sequential.update(z1, y1)
    sequential.update(z2, y2)  # the posterior of task 1 is the prior of task 2
    one_shot = GaussianDirichletPosterior(4, 5, **kwargs)
    one_shot.update(np.concatenate([z1, z2]), np.concatenate([y1, y2]))
    for name in ("precision", "mean", "predictive_var", "concentration"):
        np.testing.assert_allclose(getattr(sequential, name)(), getattr(one_shot, name)())


def test_learner_posterior_holds_each_task_statistics(streams, digits):
    x_train, y_train, _, _ = digits
    _, tasks, learner = streams[0]
    post = learner.posterior
    assert np.array_equal(post.counts, np.bincount(y_train, minlength=10))
    z = learner.embed(x_train)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0)  # L2-normalised embedding
    for c in tasks[-1].classes:  # last task: the embedding has not moved since
        np.testing.assert_allclose(post.sums[c], z[y_train == c].sum(0), rtol=1e-6, atol=1e-8)
    assert learner._coreset == [] and learner._teacher is None  # no stored sample


def test_predictions_are_seen_classes_only(streams, digits):
    x_train, y_train, x_test, _ = digits
    _, tasks, learner = streams[0]
    assert set(learner.predict(x_test)) <= set(learner.seen)
    fresh = ProtoCLLearner()
    with pytest.raises(RuntimeError):
        fresh.predict(x_test[:2])
    idx = tasks[0].indices
    fresh.learn_task(x_train[idx], y_train[idx], tasks[0].classes)
    assert set(fresh.predict(x_test)) <= set(tasks[0].classes)
    log_p = fresh.log_predictive(x_test)
    unseen = np.setdiff1d(np.arange(10), tasks[0].classes)
    assert np.all(np.isneginf(log_p[:, unseen]))
    np.testing.assert_allclose(np.exp(log_p).sum(1), 1.0)


def test_pickle_round_trip_keeps_predictions(streams, digits):
    learner = streams[0][2]
    clone = pickle.loads(pickle.dumps(learner))
    assert np.array_equal(clone.predict(digits[2]), learner.predict(digits[2]))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"obs_var": 0.0}, "obs_var"),
        ({"prior_precision": -1.0}, "prior_precision"),
        ({"prior_mean": math.nan}, "prior_mean"),
        ({"dirichlet_concentration": math.inf}, "dirichlet_concentration"),
        ({"distill_weight": -0.1}, "distill_weight"),
        ({"coreset_size": -1}, "coreset_size"),
        ({"coreset_size": 2.5}, "coreset_size"),
    ],
)
def test_bad_kwargs_raise_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ProtoCLLearner(**kwargs)
