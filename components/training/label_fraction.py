"""Training on a labelled fraction of the train split (``train.label_fraction``).

Semi-supervised and self-supervised set-ups (label-efficiency checks: fine-tune an SSL-initialised
model with 10% of the labels) keep every input for pre-training but only a seeded, stratified
fraction of the train split's labels for supervised training. The subset is chosen once over the
whole split, the same on every data-parallel rank, and each rank keeps its shard's share of it; the
val and test splits keep all their labels.
"""

from __future__ import annotations

import numpy as np


def labelled_rows(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of the rows whose labels are kept: ``round(fraction * n_c)`` rows of each
    class ``c`` (at least one), drawn by a permutation seeded with ``seed``.

    Raises:
        ValueError: if ``fraction`` is not in (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must lie in (0, 1], got {fraction}")
    y = np.asarray(y)
    if fraction == 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    kept = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        kept.append(rng.permutation(rows)[: max(1, round(fraction * len(rows)))])
    return np.sort(np.concatenate(kept))


def shard_keep(
    split_labels: np.ndarray, fraction: float, seed: int, shards: list[np.ndarray], rank: int
) -> tuple[np.ndarray, int]:
    """Which of rank ``rank``'s rows keep their labels, and the largest kept shard.

    Args:
        split_labels: the labels of the whole train split, in its stable order.
        shards: every rank's rows (positions in the split), as the reader deals them out.

    Returns:
        A boolean mask over ``shards[rank]`` and the most kept rows any rank holds (what every
        rank pads an epoch to, so data-parallel ranks take the same number of steps).
    """
    keep = np.zeros(len(split_labels), dtype=bool)
    keep[labelled_rows(split_labels, fraction, seed)] = True
    largest = max(int(keep[rows].sum()) for rows in shards)
    return keep[shards[rank]], largest
