"""Partitioners: disjoint full cover, seeded, Dirichlet skew follows alpha, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from components.federated.partition import dirichlet, disjoint_classes, iid

Y = np.repeat(np.arange(10), 100)
PARTITIONERS = {
    "iid": lambda y, k, seed: iid(y, k, seed),
    "dirichlet": lambda y, k, seed: dirichlet(y, k, alpha=0.5, seed=seed),
    "disjoint": lambda y, k, seed: disjoint_classes(y, k, seed),
}


@pytest.mark.parametrize("name", PARTITIONERS)
@pytest.mark.parametrize("num_clients", [1, 3, 7])
def test_disjoint_and_covering(name, num_clients):
    parts = PARTITIONERS[name](Y, num_clients, 0)
    assert len(parts) == num_clients
    joined = np.concatenate(parts)
    assert len(joined) == len(Y)
    assert np.array_equal(np.sort(joined), np.arange(len(Y)))


@pytest.mark.parametrize("name", PARTITIONERS)
def test_seeded(name):
    first, again = PARTITIONERS[name](Y, 4, 1), PARTITIONERS[name](Y, 4, 1)
    other = PARTITIONERS[name](Y, 4, 2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_iid_sizes_even():
    sizes = [len(p) for p in iid(Y, 7, 0)]
    assert max(sizes) - min(sizes) <= 1


def _label_skew(parts: list[np.ndarray], y: np.ndarray) -> float:
    """Mean total-variation distance between each client's label distribution and the global one."""
    overall = np.bincount(y) / len(y)
    tv = [
        0.5 * np.abs(np.bincount(y[p], minlength=len(overall)) / len(p) - overall).sum()
        for p in parts
    ]
    return float(np.mean(tv))


def test_dirichlet_skew_follows_alpha():
    near_iid = _label_skew(dirichlet(Y, 5, alpha=1000.0, seed=0), Y)
    skewed = _label_skew(dirichlet(Y, 5, alpha=0.05, seed=0), Y)
    assert near_iid < 0.05
    assert skewed > 0.5


def test_dirichlet_min_size():
    parts = dirichlet(Y, 10, alpha=0.1, seed=0, min_size=20)
    assert min(len(p) for p in parts) >= 20


def test_disjoint_classes_own_classes_evenly():
    parts = disjoint_classes(Y, 3, seed=0)
    class_sets = [set(np.unique(Y[p])) for p in parts]
    assert sorted(len(s) for s in class_sets) == [3, 3, 4]
    assert set().union(*class_sets) == set(range(10))
    assert sum(len(s) for s in class_sets) == 10


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: iid(Y, 0, 0), "num_clients"),
        (lambda: iid(Y[:3], 4, 0), "num_clients"),
        (lambda: dirichlet(Y, 0, 1.0, 0), "num_clients"),
        (lambda: dirichlet(Y, 3, 0.0, 0), "alpha"),
        (lambda: dirichlet(Y, 3, -1.0, 0), "alpha"),
        (lambda: dirichlet(Y, 3, 1.0, 0, min_size=500), "min_size"),
        (
            lambda: disjoint_classes(Y, 11, 0),
            r"more than the classes \(10\) for disjoint_classes: give each client its own "
            r"classes with federated.num_clients=10 or fewer, or share them with "
            r"federated.partition=dirichlet or iid",
        ),
        (lambda: disjoint_classes(Y, 0, 0), "num_clients"),
        (lambda: iid(Y.astype(float), 2, 0), "integer"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
