"""Prototype averaging equals the centralised class means over any partition (Hendryx 2021)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from components.federated.partition import dirichlet, disjoint_classes, iid
from components.federated.prototypes import class_sums, merge, nearest_prototype_predict

X, Y = load_digits(return_X_y=True)
X_TRAIN, X_TEST, Y_TRAIN, Y_TEST = train_test_split(X, Y, test_size=0.3, random_state=0)
MEAN, STD = X_TRAIN.mean(0), X_TRAIN.std(0) + 1e-6
PARTITIONS = {
    "iid": lambda: iid(Y_TRAIN, 5, 0),
    "dirichlet": lambda: dirichlet(Y_TRAIN, 5, alpha=0.1, seed=0),
    "disjoint": lambda: disjoint_classes(Y_TRAIN, 5, 0),
}


def _centralised_means(x, y):
    return np.stack([x[y == c].mean(0) for c in range(10)])


@pytest.mark.parametrize("standardise", [False, True])
@pytest.mark.parametrize("name", PARTITIONS)
def test_merged_equals_centralised(name, standardise):
    scale = (lambda x: (x - MEAN) / STD) if standardise else (lambda x: x)
    x_train, x_test = scale(X_TRAIN), scale(X_TEST)
    updates = [class_sums(x_train[p], Y_TRAIN[p], 10) for p in PARTITIONS[name]()]
    prototypes, counts = merge(updates)
    central = _centralised_means(x_train, Y_TRAIN)
    np.testing.assert_allclose(prototypes, central, rtol=1e-10, atol=1e-10)
    assert np.array_equal(counts, np.bincount(Y_TRAIN, minlength=10))
    merged_pred = nearest_prototype_predict(x_test, prototypes)
    central_pred = nearest_prototype_predict(x_test, central)
    assert np.array_equal(merged_pred, central_pred)
    assert (merged_pred == Y_TEST).mean() > 0.85


def test_unseen_class_is_nan_and_never_predicted():
    keep = Y_TRAIN != 3
    prototypes, counts = merge([class_sums(X_TRAIN[keep], Y_TRAIN[keep], 10)])
    assert counts[3] == 0 and np.isnan(prototypes[3]).all()
    assert not np.isnan(np.delete(prototypes, 3, axis=0)).any()
    assert 3 not in nearest_prototype_predict(X_TEST, prototypes)


def test_predict_matches_brute_force():
    rng = np.random.default_rng(0)
    emb, protos = rng.normal(size=(50, 4)), rng.normal(size=(6, 4))
    brute = ((emb[:, None, :] - protos[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(nearest_prototype_predict(emb, protos), brute)


def test_class_sums_small_case():
    sums, counts = class_sums(
        np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), np.array([0, 2, 0]), 3
    )
    np.testing.assert_array_equal(sums, [[6.0, 8.0], [0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_array_equal(counts, [2, 0, 1])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: class_sums(np.zeros((3, 2)), np.array([0, 1, 5]), 3), "labels"),
        (lambda: class_sums(np.zeros((3, 2)), np.array([0, 1]), 3), "embeddings"),
        (lambda: merge([]), "at least one"),
        (
            lambda: merge([(np.zeros((2, 3)), np.zeros(2)), (np.zeros((2, 4)), np.zeros(2))]),
            "update 1",
        ),
        (lambda: nearest_prototype_predict(np.zeros((2, 3)), np.full((2, 3), np.nan)), "no class"),
        (lambda: nearest_prototype_predict(np.zeros((2, 3)), np.zeros((2, 4))), "disagree"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
