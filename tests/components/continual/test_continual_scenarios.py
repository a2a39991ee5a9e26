"""Class-incremental splits: partitions, seeded order, errors."""

from __future__ import annotations

import numpy as np
import pytest

from components.continual.scenarios import class_incremental, seen_classes


@pytest.fixture
def y():
    return np.random.default_rng(0).integers(0, 10, size=500)


def test_digits_five_tasks_of_two(y):
    tasks = class_incremental(y, 5)
    assert [len(t.classes) for t in tasks] == [2] * 5
    assert [t.index for t in tasks] == list(range(5))
    assert sorted(c for t in tasks for c in t.classes) == list(range(10))
    indices = np.concatenate([t.indices for t in tasks])
    assert np.array_equal(np.sort(indices), np.arange(y.size))  # samples partitioned
    for t in tasks:
        assert set(np.unique(y[t.indices])) == set(t.classes)
        assert len(t) == t.indices.size


def test_seeded_order(y):
    order = [t.classes for t in class_incremental(y, 5, seed=3)]
    assert order == [t.classes for t in class_incremental(y, 5, seed=3)]
    assert order != [t.classes for t in class_incremental(y, 5, seed=4)]
    plain = class_incremental(y, 5, shuffle_classes=False)
    assert [t.classes for t in plain] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


def test_non_contiguous_labels():
    y = np.array([7, 3, 3, 11, 7, 11])
    tasks = class_incremental(y, 3, shuffle_classes=False)
    assert [t.classes for t in tasks] == [(3,), (7,), (11,)]
    assert tasks[1].indices.tolist() == [0, 4]


def test_uneven_split_only_when_explicit(y):
    with pytest.raises(ValueError, match="does not divide") as error:
        class_incremental(y, 3)
    assert (
        "continual.num_tasks to one of [2, 5, 10], or give continual.classes_per_task as a "
        "list of 3 sizes summing to 10" in str(error.value)
    )
    tasks = class_incremental(y, 3, classes_per_task=[4, 3, 3])
    assert [len(t.classes) for t in tasks] == [4, 3, 3]
    assert len(class_incremental(y, 2, classes_per_task=5)) == 2
    with pytest.raises(ValueError, match="classes_per_task"):
        class_incremental(y, 3, classes_per_task=3)
    with pytest.raises(ValueError, match="classes_per_task"):
        class_incremental(y, 2, classes_per_task=[4, 4])


@pytest.mark.parametrize(
    ("num_tasks", "match"),
    [(11, r"exceeds .* \(10\): .* set continual.num_tasks=10 or fewer"), (0, ">= 1")],
)
def test_bad_num_tasks(y, num_tasks, match):
    with pytest.raises(ValueError, match=match):
        class_incremental(y, num_tasks)


def test_bad_labels():
    with pytest.raises(ValueError, match="1-D integer"):
        class_incremental(np.array([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="1-D integer"):
        class_incremental(np.zeros((2, 2), dtype=int), 1)


def test_seen_classes(y):
    tasks = class_incremental(y, 5, seed=1)
    assert seen_classes(tasks, 0) == tasks[0].classes
    assert seen_classes(tasks, 2) == tasks[0].classes + tasks[1].classes + tasks[2].classes
    assert len(seen_classes(tasks, 4)) == 10
    with pytest.raises(ValueError, match="out of range"):
        seen_classes(tasks, 5)
