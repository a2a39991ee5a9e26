"""Stratified, seeded splits and mergeable moments."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.data.splits import split_sizes, stratified_split
from components.data.stats import Moments


@pytest.mark.parametrize(
    ("n", "val", "test", "expected"),
    [
        (100, 0.15, 0.15, (70, 15, 15)),
        (3, 0.15, 0.15, (1, 1, 1)),  # tiny classes still reach every split
        (10, 0.0, 0.2, (8, 0, 2)),
        (2, 0.15, 0.15, (2, 0, 0)),  # too few for three splits: plain rounding
        (1, 0.5, 0.4, (1, 0, 0)),  # train always keeps a row
    ],
)
def test_split_sizes(n, val, test, expected):
    assert split_sizes(n, val, test) == expected


def test_stratified_split_partitions_rows_and_keeps_class_proportions():
    y = np.repeat([0, 1, 2], [200, 50, 7])
    rows = stratified_split(y, 0.2, 0.1, np.random.default_rng(0))

    joined = np.concatenate(list(rows.values()))
    assert np.array_equal(np.sort(joined), np.arange(len(y)))  # disjoint and complete
    for label, count in enumerate([200, 50, 7]):
        sizes = tuple(int((y[rows[s]] == label).sum()) for s in ("train", "val", "test"))
        assert sizes == split_sizes(count, 0.2, 0.1)


def test_stratified_split_is_seeded():
    y = np.repeat([0, 1], 50)
    first = stratified_split(y, 0.2, 0.2, np.random.default_rng(7))
    again = stratified_split(y, 0.2, 0.2, np.random.default_rng(7))
    other = stratified_split(y, 0.2, 0.2, np.random.default_rng(8))
    assert all(np.array_equal(first[s], again[s]) for s in first)
    assert not np.array_equal(first["train"], other["train"])


def test_ingested_splits_are_stratified_by_class(tmp_path):
    spec = DataSpec(source="wine", val_fraction=0.2, test_fraction=0.1)
    result = ingest(spec, tmp_path)

    counts = {
        s: np.bincount(read_split(result.path, s)[1], minlength=3) for s in ("train", "val", "test")
    }
    for label, total in enumerate([59, 71, 48]):  # wine's class sizes
        got = tuple(int(counts[s][label]) for s in ("train", "val", "test"))
        assert got == split_sizes(total, 0.2, 0.1)


def test_moments_merge_matches_whole_array_statistics():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(1000, 5)) * [1, 10, 0.1, 3, 0] + 1e4).astype(np.float32)
    merged = Moments.empty(5)
    for chunk in np.array_split(x, [10, 11, 400, 999]):
        merged = merged.merge(Moments.of_rows(chunk))

    x64 = x.astype(np.float64)
    assert merged.count == 1000
    np.testing.assert_allclose(merged.mean, x64.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.std()[:4], x64.std(axis=0)[:4], rtol=1e-6)
    assert merged.std()[4] == 1.0  # constant feature: floored to 1
