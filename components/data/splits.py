"""Seeded, class-stratified train/val/test assignment."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from components.data.errors import DataError
from components.data.layout import SPLITS
from components.data.spec import DataSpec


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Rows of an ``n``-row class that go to train, val and test.

    Sizes are the rounded fractions, but every split with a non-zero fraction gets at least
    one row when ``n`` allows it, and train always keeps at least one row when ``n >= 1``.
    """
    n_val = math.floor(n * val_fraction + 0.5)
    n_test = math.floor(n * test_fraction + 0.5)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n >= needed:
        n_val = max(n_val, int(val_fraction > 0))
        n_test = max(n_test, int(test_fraction > 0))
    while n_val + n_test > max(n - 1, 0):
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def stratified_split(
    y: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Row indices of each split, stratified by class.

    Each class is shuffled and cut by :func:`split_sizes`; each split's indices then come in
    a seeded random order, so streaming a split sequentially sees the classes mixed.

    Args:
        y: Integer labels, shape ``(N,)``.
        val_fraction: Fraction of every class for validation.
        test_fraction: Fraction of every class for test.
        rng: Source of randomness (seed it for reproducible splits).

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``; together they partition ``range(N)``.
    """
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_train, n_val, _ = split_sizes(len(members), val_fraction, test_fraction)
        cuts = np.split(members, [n_train, n_train + n_val])
        for split, chunk in zip(SPLITS, cuts, strict=True):
            parts[split].append(chunk)
    return {
        split: rng.permutation(np.concatenate(chunks)) if chunks else np.empty(0, np.int64)
        for split, chunks in parts.items()
    }


def fixed_splits(named: Sequence[str]) -> list[str]:
    """The splits among ``named`` (a source's split of each row, or the splits it names), in
    train/val/test order: what ``meta.json`` records as ``fixed_splits``."""
    present = set(named)
    return [split for split in SPLITS if split in present]


def planned_split(
    spec: DataSpec,
    y: np.ndarray,
    fixed: Sequence[str] | None,
    *,
    class_names: Sequence[str],
    file: str | None,
    column: str | None = None,
    given: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Row indices of each split, each in an order seeded by ``spec.seed``, with the spec's
    ``val_fraction`` and ``test_fraction``.

    Without ``fixed`` (each row's split as its source fixes it: split folders, split files):
    :func:`stratified_split`. With it: the fixed rows of each split the source names
    (shuffled), and the splits it does not name carved out of train as
    :func:`stratified_split` does. ``given``: the splits the source names (default: those in
    ``fixed``; a split folder may exist and hold no row).

    Raises:
        DataError: A class has fewer rows than the (carved) splits need
            (:func:`check_class_counts`).
    """
    rng = np.random.default_rng(spec.seed)
    val_fraction, test_fraction = spec.val_fraction, spec.test_fraction
    if fixed is None:
        needed = 1 + (val_fraction > 0) + (test_fraction > 0)
        check_class_counts(y, class_names, needed, file=file, column=column)
        return stratified_split(y, val_fraction, test_fraction, rng)
    fixed = np.asarray(fixed)
    given = set(given or fixed.tolist())
    train = np.flatnonzero(fixed == "train")
    carve = {
        "val": val_fraction * ("val" not in given),
        "test": test_fraction * ("test" not in given),
    }
    needed = 1 + sum(f > 0 for f in carve.values())
    check_class_counts(y[train], class_names, needed, file=file, column=column)
    carved = stratified_split(y[train], carve["val"], carve["test"], rng)
    return {
        split: train[carved[split]]
        if split == "train" or split not in given
        else rng.permutation(np.flatnonzero(fixed == split))
        for split in SPLITS
    }


SHORT_LISTED = 10  # short classes named in the message; the rest are counted


_FEWER_SPLITS_HINT = (
    "; give those classes more rows or leave them out, or split fewer ways "
    "(data.val_fraction=0 or data.test_fraction=0)"
)


def _not_a_class_hint(classes: int, rows: int) -> str:
    """A label column with nearly as many values as rows holds no classes (a measurement, an
    id): say so, since its many one-row "classes" are the symptom, not the cause."""
    if classes < 20 or classes * 4 < rows:
        return ""
    return (
        f". The label column holds {classes} distinct values in {rows} rows, so it looks like "
        "a measurement or an id rather than a class: sennflow trains classifiers; name the "
        "class column with data.label_column, or bin the values into classes first"
    )


def check_class_counts(
    y: np.ndarray,
    class_names: Sequence[str],
    needed: int,
    *,
    file: str | None,
    column: str | None,
) -> None:
    """Raise if some class has fewer rows than the splits need (one per split).

    Raises:
        DataError: Naming every short class and its row count.
    """
    counts = np.bincount(y, minlength=len(class_names))
    short = [(class_names[k], int(c)) for k, c in enumerate(counts) if c < needed]
    if not short:
        return
    listed = ", ".join(f"class {name!r} has {count}" for name, count in short[:SHORT_LISTED])
    if len(short) > SHORT_LISTED:
        listed += f" and {len(short) - SHORT_LISTED} more classes"
    raise DataError(
        f"too few rows per class: {listed}; each class needs at least {needed} "
        f"(one for each of the {needed} non-empty splits)"
        f"{_not_a_class_hint(len(counts), len(y)) or _FEWER_SPLITS_HINT}",
        file=file,
        column=column,
        rows=sum(count for _, count in short),
    )
