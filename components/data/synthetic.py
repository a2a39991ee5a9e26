"""Seeded class-conditional Gaussian data of any size, generated and written with Dask.

Each partition is generated from its own seed ``(seed, partition index)``, split (stratified,
within the partition) and written straight to Parquet, so memory is bounded by the partition
size times the number of worker threads, whatever the total size. Training-split statistics
come from a tree reduction of per-partition :class:`Moments`.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np

from components.data.layout import SPLITS
from components.data.spec import DataSpec
from components.data.splits import split_sizes, stratified_split
from components.data.stats import Moments
from components.data.writer import write_part

# Each worker thread holds about one partition (a few copies of it); cap the threads so peak
# memory stays bounded on many-core machines.
MAX_WORKERS = 8
_FAN_IN = 8


@dataclass(frozen=True)
class SyntheticSummary:
    """What the writer needs for ``meta.json``: rows per split and train-split moments."""

    row_counts: dict[str, int]
    train: Moments

    def merge(self, *others: SyntheticSummary) -> SyntheticSummary:
        """Summary of this and ``others`` together (they cover disjoint partitions)."""
        counts = dict(self.row_counts)
        train = self.train
        for other in others:
            counts = {s: counts[s] + other.row_counts[s] for s in SPLITS}
            train = train.merge(other.train)
        return SyntheticSummary(counts, train)


def partition_sizes(num_samples: int, partition_rows: int) -> list[int]:
    """Near-equal partition sizes (differing by at most one) of at most ``partition_rows``."""
    count = math.ceil(num_samples / partition_rows)
    base, extra = divmod(num_samples, count)
    return [base + (i < extra) for i in range(count)]


def check_synthetic(spec: DataSpec) -> None:
    """Raise unless every partition gives every class a row in each non-empty split."""
    smallest = min(partition_sizes(spec.num_samples, spec.partition_rows))
    per_class = smallest // spec.num_classes
    train, val, test = split_sizes(per_class, spec.val_fraction, spec.test_fraction)
    if train < 1 or (spec.val_fraction > 0 and val < 1) or (spec.test_fraction > 0 and test < 1):
        raise ValueError(
            f"DataSpec: partitions of {smallest} rows give each of the {spec.num_classes} classes "
            f"only {per_class} rows, too few for {spec.num_splits_needed} splits; raise "
            "num_samples or partition_rows"
        )


def class_means(spec: DataSpec) -> np.ndarray:
    """Class means ``(C, F)`` of norm about ``class_sep`` (independent of ``num_features``)."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(0,)))
    means = rng.standard_normal((spec.num_classes, spec.num_features))
    return (means * spec.class_sep / math.sqrt(spec.num_features)).astype(np.float32)


def generate_partition(
    spec: DataSpec, index: int, num_rows: int, means: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Rows of partition ``index``: balanced labels, ``x ~ N(means[y], I)``.

    Returns:
        ``(x, y, rng)``; ``rng`` continues the partition's stream (used for its split).
    """
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(1, index)))
    y = rng.permutation(np.arange(num_rows) % spec.num_classes).astype(np.int64)
    x = rng.standard_normal((num_rows, spec.num_features), dtype=np.float32)
    x += means[y]
    return x, y, rng


def write_synthetic(
    spec: DataSpec, root: Path, progress: Callable[[str], None] | None = None
) -> SyntheticSummary:
    """Generate the dataset partition by partition with Dask and write it under ``root``.

    Args:
        spec: A ``synthetic`` spec.
        root: The dataset folder (``data/`` is created inside).
        progress: Called with a short message every ~5% of the partitions.

    Returns:
        Row counts per split and the moments of the train split.
    """
    check_synthetic(spec)
    sizes = partition_sizes(spec.num_samples, spec.partition_rows)
    means = class_means(spec)
    report = _Progress(len(sizes), progress)
    write = dask.delayed(_write_partition, pure=False)
    parts = [write(spec, i, n, means, root, report) for i, n in enumerate(sizes)]
    total = _tree_reduce(parts)
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    (summary,) = dask.compute(total, scheduler="threads", num_workers=workers)
    return summary


def _write_partition(
    spec: DataSpec, index: int, num_rows: int, means: np.ndarray, root: Path, report: _Progress
) -> SyntheticSummary:
    x, y, rng = generate_partition(spec, index, num_rows, means)
    rows = stratified_split(y, spec.val_fraction, spec.test_fraction, rng)
    train = Moments.empty(spec.num_features)
    for split, idx in rows.items():
        x_split = x[idx]
        write_part(root, split, index, x_split, y[idx])
        if split == "train":
            train = Moments.of_rows(x_split)
    report.step()
    return SyntheticSummary({s: len(rows[s]) for s in SPLITS}, train)


def _merge(*summaries: SyntheticSummary) -> SyntheticSummary:
    return summaries[0].merge(*summaries[1:])


def _tree_reduce(items: list) -> object:
    """Merge delayed summaries ``_FAN_IN`` at a time until one is left."""
    merge = dask.delayed(_merge, pure=True)
    while len(items) > 1:
        items = [merge(*items[i : i + _FAN_IN]) for i in range(0, len(items), _FAN_IN)]
    return items[0]


class _Progress:
    """Thread-safe 'k/n partitions written' reporter, at most ~20 messages per run."""

    def __init__(self, total: int, callback: Callable[[str], None] | None) -> None:
        self._total = total
        self._callback = callback
        self._done = 0
        self._every = max(1, total // 20)
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self._done += 1
            done = self._done
        if self._callback and (done % self._every == 0 or done == self._total):
            self._callback(f"synthetic: {done}/{self._total} partitions written")
