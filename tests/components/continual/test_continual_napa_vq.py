"""NAPA-VQ on split digits (5 tasks x 2 classes, class order seed 0, default ``LearnerConfig``).

Measured with the defaults (``config.seed`` = class-order seed): final average accuracy
0.874 / 0.851 / 0.847 and max-based forgetting 0.097 / 0.093 / 0.065 for seeds 0 / 1 / 2.
The tests assert the issue's floor on seed 0 (>= 0.80, forgetting <= 0.20) and on seeds 1 and
2 a slightly lower floor (>= 0.78, forgetting <= 0.25).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from components.continual.learners import LearnerConfig
from components.continual.metrics import summary
from components.continual.napa_vq import NAPAVQLearner
from components.continual.scenarios import class_incremental
from components.continual.stream import learn_stream


def _data(digits, seed):
    return (*digits, class_incremental(digits[1], 5, seed=seed))


def _run(learner, data, on_task=None):
    return learn_stream(learner, data[:4], data[4], on_task)[0]


@pytest.fixture(scope="module")
def stream(digits):
    """Seed 0 stream with a snapshot of the learner's state after each task."""
    data = _data(digits, 0)
    snapshots = []

    def snapshot(i, learner, x, y):
        xt, yt = torch.from_numpy(x[:32].astype(np.float32)), torch.from_numpy(y[:32])
        unseen = torch.from_numpy(learner._unseen_mask())
        rng_state = learner._aug_rng.bit_generator.state  # keep the stream as measured
        with torch.no_grad():
            terms = {k: float(v) for k, v in learner.loss_terms(xt, yt, unseen).items()}
        learner._aug_rng.bit_generator.state = rng_state
        snapshots.append({"adjacency": learner.class_adjacency(), "terms": terms})

    learner = NAPAVQLearner(LearnerConfig(seed=0))
    R = _run(learner, data, snapshot)
    return R, learner, snapshots, data


def test_meets_the_issue_floor_seed_0(stream):
    s = summary(stream[0])
    assert s["average_accuracy"] >= 0.80  # measured 0.874
    assert s["forgetting"] <= 0.20  # measured 0.097


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_stay_near_the_floor(digits, seed):
    s = summary(_run(NAPAVQLearner(LearnerConfig(seed=seed)), _data(digits, seed)))
    assert s["average_accuracy"] >= 0.78  # measured 0.851 (seed 1), 0.847 (seed 2)
    assert s["forgetting"] <= 0.25  # measured 0.093, 0.065


def test_topology_connects_every_class_after_task_2(stream):
    _, learner, snapshots, data = stream
    tasks = data[4]
    adj = snapshots[1]["adjacency"]
    for c in tasks[0].classes + tasks[1].classes:
        others = [d for d in tasks[0].classes + tasks[1].classes if d != c]
        assert adj[c, others].any(), f"class {c} has no neighbour"
    assert np.array_equal(adj, adj.T)
    edges = learner.edges()
    assert np.array_equal(edges, edges.T) and not edges.diagonal().any()


def test_augmented_prototypes_stay_nearest_their_own_class(stream):
    _, learner, _, _ = stream
    p, labels = learner.augment_prototypes(500)
    assert set(labels) <= set(learner.old_classes)
    protos = learner.prototypes[learner.seen]
    nearest = np.asarray(learner.seen)[((p[:, None, :] - protos[None]) ** 2).sum(-1).argmin(1)]
    assert (nearest == labels).all()


def test_distillation_is_zero_on_first_task_and_positive_later(stream):
    _, _, snapshots, _ = stream
    # snapshot i is taken after task i, so task 0's terms come from a learner without old net
    assert snapshots[0]["terms"]["kd"] == 0.0
    assert snapshots[0]["terms"]["proto_aug"] == 0.0
    assert all(s["terms"]["kd"] > 0.0 for s in snapshots[1:])
    assert all(s["terms"]["proto_aug"] > 0.0 for s in snapshots[1:])


def test_old_codebook_vectors_are_frozen_and_no_sample_is_stored(stream):
    _, learner, _, _ = stream
    blocks = learner._codebooks
    assert len(blocks) == 5 and all(not b.requires_grad for b in blocks[:-1])
    assert len(learner.codebook()) == 10 * learner.codebooks_per_class
    arrays = [v for v in vars(learner).values() if isinstance(v, np.ndarray)]
    assert max(a.shape[0] for a in arrays) <= learner.config.num_classes


def test_predictions_stay_within_seen_classes_and_pickle(stream):
    _, learner, _, data = stream
    x_test = data[2]
    assert set(learner.predict(x_test)) <= set(learner.seen)
    clone = pickle.loads(pickle.dumps(learner))
    assert np.array_equal(clone.predict(x_test), learner.predict(x_test))
    fresh = NAPAVQLearner(LearnerConfig(seed=0))
    with pytest.raises(RuntimeError):
        fresh.predict(x_test[:3])
    with pytest.raises(RuntimeError):
        fresh.augment_prototypes(3)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"kd_weight": -1.0}, "kd_weight"),
        ({"proto_aug_weight": -0.5}, "proto_aug_weight"),
        ({"codebooks_per_class": 0}, "codebooks_per_class"),
        ({"neighbours": 1.5}, "neighbours"),
        ({"max_edge_age": 0}, "max_edge_age"),
        ({"interpolation_min": 1.5}, "interpolation_min"),
        ({"backbone_lr_scale": 2.0}, "backbone_lr_scale"),
        ({"later_task_lr_factor": -0.1}, "later_task_lr_factor"),
        ({"cv_init": "zeros"}, "cv_init"),
    ],
)
def test_bad_kwargs_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NAPAVQLearner(**kwargs)
