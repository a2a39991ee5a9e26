"""Classification metrics as plain functions over numpy arrays or torch tensors.

Every function accepts numpy arrays, torch tensors or nested sequences. Labels are integer class
indices in ``[0, num_classes)``; scores are ``(N, C)`` logits or probabilities.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from components.evaluation.arrays import as_labels, as_numpy, as_scores


def _check_same_length(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names[0]} has {len(a)} rows but {names[1]} has {len(b)}")


def _check_probabilities(probs: np.ndarray) -> None:
    if probs.size and (probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)):
        raise ValueError("probs: each row must be a probability vector (non-negative, sums to 1)")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def accuracy(probs_or_logits: Any, y: Any) -> float:
    """Fraction of samples whose arg-max class equals the label.

    Args:
        probs_or_logits: ``(N, C)`` scores (logits or probabilities), or ``(N,)`` predicted labels.
        y: ``(N,)`` true labels.

    Returns:
        Accuracy in ``[0, 1]``; ``nan`` for an empty input.
    """
    name = "probs_or_logits"
    scores = as_numpy(probs_or_logits, name)
    pred = as_labels(scores, name) if scores.ndim == 1 else as_scores(scores, name).argmax(axis=1)
    labels = as_labels(y, "y")
    _check_same_length(pred, labels, ("probs_or_logits", "y"))
    return float(np.mean(pred == labels)) if labels.size else math.nan


def confusion_matrix(pred: Any, y: Any, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows are true classes, columns predicted classes.

    Returns:
        ``(num_classes, num_classes)`` int64 matrix.
    """
    pred = as_labels(pred, "pred", num_classes)
    labels = as_labels(y, "y", num_classes)
    _check_same_length(pred, labels, ("pred", "y"))
    flat = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(pred: Any, y: Any, num_classes: int) -> list[float]:
    """Recall of each class: correct predictions among the samples of that class.

    Returns:
        One value per class; ``nan`` for a class with no samples.
    """
    cm = confusion_matrix(pred, y, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(cm) / support
    return [float(v) for v in recall]


def macro_f1(pred: Any, y: Any, num_classes: int) -> float:
    """Unweighted mean of per-class F1 scores.

    Classes that occur neither in ``y`` nor in ``pred`` have no defined F1 and are left out of the
    mean, as ``sklearn.metrics.f1_score(y, pred, average="macro")`` does.
    """
    cm = confusion_matrix(pred, y, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = (support + predicted) > 0
    if not present.any():
        return math.nan
    f1 = 2 * tp[present] / (support[present] + predicted[present])
    return float(f1.mean())


def nll(logits: Any, y: Any) -> float:
    """Mean negative log-likelihood (natural log) of the labels under ``softmax(logits)``."""
    scores = as_scores(logits, "logits")
    labels = as_labels(y, "y", scores.shape[1])
    _check_same_length(scores, labels, ("logits", "y"))
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean()) if labels.size else math.nan


def _binned_confidence(probs: Any, y: Any, n_bins: int) -> dict[str, np.ndarray]:
    """Per-bin mean top-label confidence, accuracy and count over equal-width bins on [0, 1].

    Bin ``m`` holds confidences in ``((m-1)/M, m/M]`` (Guo et al. 2017, "On Calibration of Modern
    Neural Networks", Sec. 2); the first bin also takes confidence 0.
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    p = as_scores(probs, "probs")
    _check_probabilities(p)
    labels = as_labels(y, "y", p.shape[1])
    _check_same_length(p, labels, ("probs", "y"))
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        mean_acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return {"confidence": mean_conf, "accuracy": mean_acc, "count": count, "edges": edges}


def expected_calibration_error(probs: Any, y: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017, Eq. 3).

    ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` over equal-width confidence bins.

    Args:
        probs: ``(N, C)`` predicted probabilities (rows sum to 1).
        y: ``(N,)`` true labels.
        n_bins: number of equal-width bins on ``[0, 1]``.
    """
    bins = _binned_confidence(probs, y, n_bins)
    total = bins["count"].sum()
    if total == 0:
        return math.nan
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["count"][filled] / total * gaps))


def reliability_bins(probs: Any, y: Any, n_bins: int = 15) -> dict:
    """The data of a reliability diagram, JSON-serialisable.

    Returns:
        ``{"confidence", "accuracy", "count"}`` with one entry per bin (``None`` for the mean
        confidence and accuracy of an empty bin) and ``"edges"`` with ``n_bins + 1`` bin edges.
    """
    bins = _binned_confidence(probs, y, n_bins)
    return {
        "confidence": _nan_to_none(bins["confidence"]),
        "accuracy": _nan_to_none(bins["accuracy"]),
        "count": [int(c) for c in bins["count"]],
        "edges": [float(e) for e in bins["edges"]],
    }


def _nan_to_none(values: Any) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def classification_metrics(logits: Any, y: Any, num_classes: int, n_bins: int = 15) -> dict:
    """All classification metrics of one split, JSON-serialisable.

    Args:
        logits: ``(N, num_classes)`` raw model outputs.
        y: ``(N,)`` true labels.
        num_classes: number of classes.
        n_bins: calibration bins.

    Returns:
        ``accuracy``, ``macro_f1``, ``nll``, ``ece`` (floats), ``per_class_accuracy`` (list,
        ``None`` for a class without samples), ``confusion_matrix`` (nested lists, rows = true
        class), ``reliability`` (see :func:`reliability_bins`) and ``num_samples``.
    """
    scores = as_scores(logits, "logits")
    if scores.shape[1] != num_classes:
        raise ValueError(f"logits: expected {num_classes} columns, got {scores.shape[1]}")
    labels = as_labels(y, "y", num_classes)
    _check_same_length(scores, labels, ("logits", "y"))
    if labels.size == 0:
        raise ValueError("classification_metrics: got zero samples")
    probs = _softmax(scores)
    pred = scores.argmax(axis=1)
    return {
        "accuracy": accuracy(pred, labels),
        "macro_f1": macro_f1(pred, labels, num_classes),
        "nll": nll(scores, labels),
        "ece": expected_calibration_error(probs, labels, n_bins),
        "per_class_accuracy": _nan_to_none(per_class_accuracy(pred, labels, num_classes)),
        "confusion_matrix": confusion_matrix(pred, labels, num_classes).tolist(),
        "reliability": reliability_bins(probs, labels, n_bins),
        "num_samples": int(labels.size),
    }
