"""SP-LIME: pick a few samples whose explanations together cover the important features.

Ribeiro, Singh & Guestrin (2016), "Why Should I Trust You?": Explaining the Predictions of Any
Classifier, Section 4 and Algorithm 2 (submodular pick). Given the explanation matrix ``W``
(samples x interpretable features), feature ``j``'s global importance is
``I_j = sqrt(sum_i |W_ij|)``; the coverage of a set of samples ``V`` is
``c(V) = sum_j I_j [exists i in V: |W_ij| > 0]``. Coverage is monotone submodular, so picking
greedily the sample with the largest coverage gain reaches at least ``1 - 1/e`` of the best
``budget``-sample coverage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SubmodularPick:
    """The samples SP-LIME picked, in pick order.

    Attributes:
        indices: Picked sample indices (rows of ``W``).
        coverage: ``c(V)`` after each pick (non-decreasing).
        coverage_fraction: ``coverage`` over the total importance ``sum_j I_j`` (in [0, 1]).
        importance: Global importance ``I_j`` of every feature.
    """

    indices: list[int]
    coverage: list[float]
    coverage_fraction: list[float]
    importance: np.ndarray


def submodular_pick(
    explanations: Any, budget: int, *, top_k: int | None = None, tolerance: float = 0.0
) -> SubmodularPick:
    """Greedy submodular pick of ``budget`` samples (Ribeiro et al. 2016, Algorithm 2).

    Args:
        explanations: ``W``, ``(n_samples, *feature_shape)`` attributions; flattened per sample
            and taken in absolute value.
        budget: ``B``, how many samples to pick (at most ``n_samples``).
        top_k: Keep only each sample's ``top_k`` largest ``|W_ij|``: LIME explains with ``K``
            features, and with dense attributions the first pick would already cover all.
        tolerance: ``|W_ij|`` above this counts as the sample using feature ``j``.

    Returns:
        The picked samples and their coverage; ties go to the lowest sample index.
    """
    weights = np.abs(np.asarray(explanations, dtype=np.float64))
    weights = weights.reshape(len(weights), -1) if weights.ndim > 1 else weights[:, None]
    if not 1 <= budget <= len(weights):
        raise ValueError(f"budget must lie in [1, {len(weights)}], got {budget}")
    if top_k is not None:
        weights = _keep_top_k(weights, top_k)
    importance = np.sqrt(weights.sum(0))
    used = weights > tolerance
    covered = np.zeros(weights.shape[1], dtype=bool)
    indices: list[int] = []
    coverage: list[float] = []
    for _ in range(budget):
        gains = (used & ~covered) @ importance
        gains[indices] = -np.inf  # a sample is picked at most once
        best = int(np.argmax(gains))
        indices.append(best)
        covered |= used[best]
        coverage.append(float(importance[covered].sum()))
    total = float(importance.sum())
    fractions = [c / total if total > 0 else 0.0 for c in coverage]
    return SubmodularPick(indices, coverage, fractions, importance)


def _keep_top_k(weights: np.ndarray, top_k: int) -> np.ndarray:
    if not 1 <= top_k <= weights.shape[1]:
        raise ValueError(f"top_k must lie in [1, {weights.shape[1]}], got {top_k}")
    order = np.argsort(-weights, axis=1, kind="stable")[:, :top_k]
    kept = np.zeros_like(weights)
    np.put_along_axis(kept, order, np.take_along_axis(weights, order, axis=1), axis=1)
    return kept
