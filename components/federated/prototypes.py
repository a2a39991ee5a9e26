"""Prototype averaging: clients send per-class embedding sums and counts, the server merges.

Federated Reconnaissance (Hendryx, KC, Lin and Karlinsky 2021, "Federated Reconnaissance:
Efficient, Distributed, Class-Incremental Learning") keeps one prototype (class mean) per class and
updates it online: a client sends, for each class it saw, the sum of its embeddings and their count;
the server adds sums and counts, and a prototype is their ratio. Because sums and counts add up
exactly, the merged prototypes equal the class means computed on the pooled data, whatever the
partition (up to floating point). Classification is by the nearest prototype in squared Euclidean
distance (Snell, Swersky and Zemel 2017, "Prototypical Networks").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_sums(
    embeddings: np.ndarray, y: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums (C, D) in float64 and counts (C,) in int64 of one client's embeddings.

    Raises:
        ValueError: if shapes disagree or a label is outside ``[0, num_classes)``.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(y)
    if embeddings.ndim != 2 or y.shape != (len(embeddings),):
        raise ValueError(f"embeddings must be (N, D) and y (N,), got {embeddings.shape}, {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {y.min()}..{y.max()}")
    sums = np.zeros((num_classes, embeddings.shape[1]))
    np.add.at(sums, y, embeddings)
    return sums, np.bincount(y, minlength=num_classes).astype(np.int64)


def merge(
    updates: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Count-weighted average of client prototypes: (sum of sums) / (sum of counts).

    Returns:
        ``(prototypes, counts)``: prototypes (C, D) float64 and total counts (C,). A class that no
        client saw has count 0 and a prototype row of NaN, so it is never predicted by
        :func:`nearest_prototype_predict`; test ``counts > 0`` to find the known classes.

    Raises:
        ValueError: if there are no updates or their shapes disagree.
    """
    if not updates:
        raise ValueError("merge needs at least one (sums, counts) update")
    shape = np.shape(updates[0][0])
    for i, (sums, counts) in enumerate(updates):
        if np.shape(sums) != shape or np.shape(counts) != shape[:1]:
            raise ValueError(
                f"update {i} has sums {np.shape(sums)} and counts {np.shape(counts)}, "
                f"expected {shape} and {shape[:1]}"
            )
    total = np.sum([np.asarray(s, dtype=np.float64) for s, _ in updates], axis=0)
    counts = np.sum([np.asarray(c, dtype=np.int64) for _, c in updates], axis=0)
    prototypes = np.full(shape, np.nan)
    seen = counts > 0
    prototypes[seen] = total[seen] / counts[seen, None]
    return prototypes, counts


def nearest_prototype_predict(embeddings: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Label of the nearest prototype (squared Euclidean); NaN prototype rows are never chosen.

    Raises:
        ValueError: if no prototype is defined or the dimensions disagree.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    prototypes = np.asarray(prototypes, dtype=np.float64)
    if embeddings.ndim != 2 or prototypes.ndim != 2 or embeddings.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"embeddings (N, D) and prototypes (C, D) disagree: {embeddings.shape}, "
            f"{prototypes.shape}"
        )
    known = ~np.isnan(prototypes).any(axis=1)
    if not known.any():
        raise ValueError("no class has a prototype (all rows are NaN)")
    # |e - p|^2 = |e|^2 - 2 e.p + |p|^2; |e|^2 is the same for every class, so it is left out.
    distances = (prototypes[known] ** 2).sum(axis=1) - 2.0 * embeddings @ prototypes[known].T
    return np.flatnonzero(known)[distances.argmin(axis=1)]
