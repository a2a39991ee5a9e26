"""Clustering metrics: agreement of cluster ids with class labels, invariant to renaming clusters.

Cluster ids are arbitrary, so accuracy first matches clusters to classes one-to-one with the
Hungarian algorithm (the matching that maximises the number of agreeing samples), the standard
evaluation of deep clustering (e.g. DEC, TELL). NMI and ARI need no matching.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sklearn.metrics
from scipy.optimize import linear_sum_assignment

from components.evaluation.arrays import as_labels, as_numpy, as_scores


def _check_pair(pred: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, labels = as_labels(pred, "pred"), as_labels(y, "y")
    if len(pred) != len(labels):
        raise ValueError(f"pred has {len(pred)} rows but y has {len(labels)}")
    if pred.size and min(pred.min(), labels.min()) < 0:
        raise ValueError("pred and y must be non-negative integer ids")
    return pred, labels


def contingency(pred: Any, y: Any) -> np.ndarray:
    """Counts of (cluster, class) pairs: rows are cluster ids, columns class labels.

    Returns:
        ``(max(pred) + 1, max(y) + 1)`` int64 matrix.
    """
    pred, labels = _check_pair(pred, y)
    shape = (int(pred.max(initial=-1)) + 1, int(labels.max(initial=-1)) + 1)
    table = np.zeros(shape, dtype=np.int64)
    np.add.at(table, (pred, labels), 1)
    return table


def best_matching(pred: Any, y: Any) -> dict[int, int]:
    """The one-to-one cluster -> class map that maximises agreement (Hungarian algorithm).

    With more clusters than classes the surplus clusters stay unmatched (absent from the map);
    with fewer, some classes get no cluster.
    """
    table = contingency(pred, y)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True)}


def clustering_accuracy(pred: Any, y: Any) -> float:
    """Fraction of samples whose cluster maps to their class under :func:`best_matching`.

    Returns:
        Accuracy in ``[0, 1]``; ``nan`` for an empty input.
    """
    pred, labels = _check_pair(pred, y)
    if not labels.size:
        return math.nan
    table = contingency(pred, labels)
    mapping = best_matching(pred, labels)
    return float(sum(table[r, c] for r, c in mapping.items()) / labels.size)


def nmi(pred: Any, y: Any) -> float:
    """Normalised mutual information (arithmetic normalisation, scikit-learn's default)."""
    pred, labels = _check_pair(pred, y)
    return float(sklearn.metrics.normalized_mutual_info_score(labels, pred))


def ari(pred: Any, y: Any) -> float:
    """Adjusted Rand index: 1 for identical partitions, about 0 for random ones."""
    pred, labels = _check_pair(pred, y)
    return float(sklearn.metrics.adjusted_rand_score(labels, pred))


def clustering_metrics(logits_or_pred: Any, y: Any) -> dict:
    """All clustering metrics in one JSON-serialisable dict.

    Args:
        logits_or_pred: ``(N, K)`` cluster scores (assignment = arg-max) or ``(N,)`` cluster ids.
        y: ``(N,)`` true class labels.

    Returns:
        ``clustering_accuracy``, ``nmi``, ``ari``, ``num_clusters`` (distinct clusters used),
        ``num_samples`` and ``mapping`` (cluster id as a string -> matched class, JSON keys).
    """
    values = as_numpy(logits_or_pred, "logits_or_pred")
    if values.ndim == 2:
        pred = as_scores(values, "logits_or_pred").argmax(axis=1)
    else:
        pred = as_labels(values, "logits_or_pred")
    pred, labels = _check_pair(pred, y)
    return {
        "clustering_accuracy": clustering_accuracy(pred, labels),
        "nmi": nmi(pred, labels),
        "ari": ari(pred, labels),
        "num_clusters": int(np.unique(pred).size),
        "num_samples": int(labels.size),
        "mapping": {str(k): v for k, v in best_matching(pred, labels).items()},
    }
