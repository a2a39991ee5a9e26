"""Conversion and validation of the arrays that metrics and explainers take."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_numpy(values: Any, name: str) -> np.ndarray:
    """Convert a tensor / array / sequence to a numpy array, naming ``name`` on failure."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: cannot convert {type(values).__name__} to an array") from err


def as_labels(values: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    """Validate a 1-D vector of integer class indices."""
    labels = as_numpy(values, name)
    if labels.ndim != 1:
        raise ValueError(
            f"{name}: expected a 1-D vector of class indices, got shape {labels.shape}"
        )
    is_integral = np.issubdtype(labels.dtype, np.integer) or np.all(np.mod(labels, 1) == 0)
    if labels.size and not is_integral:
        raise ValueError(f"{name}: class indices must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if num_classes is not None and labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{name}: class indices must lie in [0, {num_classes}), found range [{low}, {high}]"
            )
    return labels


def as_scores(values: Any, name: str) -> np.ndarray:
    """Validate an ``(N, C)`` matrix of finite logits or probabilities."""
    scores = as_numpy(values, name).astype(np.float64)
    if scores.ndim != 2:
        raise ValueError(f"{name}: expected shape (N, C), got {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return scores
