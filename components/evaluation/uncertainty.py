"""Predictive-uncertainty metrics: entropy decomposition, misclassification and OOD detection.

Plain functions over numpy arrays or torch tensors. Entropies are in nats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from components.evaluation.arrays import as_numpy
from components.models.prob_psenn import entropy_decomposition


def predictive_uncertainty(prob_samples: Any) -> dict[str, np.ndarray]:
    """Total, aleatoric and epistemic uncertainty of sampled predictives.

    ``total`` is the entropy of the mean predictive, ``aleatoric`` the mean entropy of the
    samples and ``epistemic = total - aleatoric`` (the mutual information between label and
    sample); ``total == aleatoric + epistemic`` and all three are ``>= 0``.

    Args:
        prob_samples: ``(N, S, C)`` class probabilities of ``S`` sampled models per input.

    Returns:
        ``{"total", "aleatoric", "epistemic"}``, each an ``(N,)`` float64 array.

    Raises:
        ValueError: if the input is not ``(N, S, C)`` probability vectors.
    """
    probs = as_numpy(prob_samples, "prob_samples").astype(np.float64)
    if probs.ndim != 3:
        raise ValueError(f"prob_samples: expected shape (N, S, C), got {probs.shape}")
    if probs.size and (probs.min() < 0 or not np.allclose(probs.sum(-1), 1.0, atol=1e-4)):
        raise ValueError("prob_samples: every (n, s) row must be a probability vector")
    parts = entropy_decomposition(torch.from_numpy(probs))
    return {name: values.numpy() for name, values in parts.items()}


def uncertainty_auroc(scores: Any, is_wrong: Any) -> float:
    """How well an uncertainty score ranks wrong predictions above right ones (ROC AUC).

    Args:
        scores: ``(N,)`` uncertainty per prediction (higher = less certain).
        is_wrong: ``(N,)`` booleans, ``True`` where the prediction is wrong.

    Returns:
        The AUROC in ``[0, 1]`` (0.5 = chance); ``nan`` if all predictions are right or all
        are wrong.
    """
    scores = as_numpy(scores, "scores").astype(np.float64).ravel()
    labels = as_numpy(is_wrong, "is_wrong").astype(bool).ravel()
    if len(scores) != len(labels):
        raise ValueError(f"scores has {len(scores)} rows but is_wrong has {len(labels)}")
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, scores))


def gaussian_noise_like(x: Any, *, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Out-of-distribution inputs: i.i.d. ``N(0, scale^2)`` noise with the shape of ``x``.

    On standardised features (mean 0, std 1 per feature on train) this noise matches every
    feature's first two moments but none of the data's structure.

    Returns:
        float32 array of ``x``'s shape.
    """
    shape = as_numpy(x, "x").shape
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def ood_auroc(in_scores: Any, ood_scores: Any) -> float:
    """AUROC of telling out-of-distribution inputs from in-distribution ones by their score.

    Args:
        in_scores: ``(N,)`` uncertainty of in-distribution inputs.
        ood_scores: ``(M,)`` uncertainty of out-of-distribution inputs.

    Returns:
        The AUROC (1.0: every OOD input is more uncertain than every in-distribution one).
    """
    inside = as_numpy(in_scores, "in_scores").astype(np.float64).ravel()
    outside = as_numpy(ood_scores, "ood_scores").astype(np.float64).ravel()
    labels = np.r_[np.zeros(len(inside), bool), np.ones(len(outside), bool)]
    return uncertainty_auroc(np.r_[inside, outside], labels)
