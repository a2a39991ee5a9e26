"""Explanation quality without re-running the explainer: axioms, ground truth and complexity.

* Axiom: :func:`completeness_gap`, Integrated Gradients' completeness (Sundararajan et al. 2017).
* Ground truth: :func:`feature_agreement`, :func:`rank_agreement` (FA / RA, Agarwal et al. 2022,
  OpenXAI), :func:`mask_localisation` (relevance mass accuracy, Arras et al. 2022).
* Complexity: :func:`sparseness` (Gini index, Chalasani et al. 2020) and
  :func:`attribution_entropy` (Bhatt et al. 2020), over elements or, with ``groups``, over the
  interpretable features (patches, superpixels) whose attributions are summed.

All return one value per sample; "features" are ranked by ``|attribution|`` with ties kept in
feature order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from components.evaluation.arrays import as_numpy
from components.evaluation.faithfulness import (
    Target,
    as_attributions,
    feature_labels,
    feature_scores,
    model_scores,
    resolve_target,
)
from components.perturbation.removal import remove_features
from components.tensors import as_float_tensor


def completeness_gap(
    model: nn.Module,
    x: Any,
    attributions: Any,
    *,
    baseline: Any = None,
    target: Target = None,
    output: str = "logit",
    tol: float = 1e-2,
) -> tuple[np.ndarray, np.ndarray]:
    """Completeness of Integrated Gradients (Sundararajan et al. 2017).

    IG's attributions sum to the change of the explained output between the baseline and the
    input: ``sum_i attr_i = f_c(x) - f_c(baseline)``, with ``f_c`` the target ``logit``
    (default) or ``prob``. The baseline is the fully removed input (``remove_features`` with
    ``baseline``; default zeros).

    Returns:
        ``(gap, ok)``: ``(N,)`` ``|sum attr - (f_c(x) - f_c(baseline))|`` and ``gap <= tol``.
    """
    x = as_float_tensor(x)
    attr = as_attributions(attributions, x)
    reference = remove_features(x, torch.ones_like(x), replacement="baseline", baseline=baseline)
    target = resolve_target(model, x, target).view(-1, 1)
    change = model_scores(model, x, output).gather(1, target).squeeze(1).double()
    change = change - model_scores(model, reference, output).gather(1, target).squeeze(1).double()
    gap = (attr.reshape(len(x), -1).double().sum(dim=1) - change).abs().numpy()
    return gap, gap <= tol


def _rows(values: Any, name: str) -> np.ndarray:
    """``(N, d)``: each sample's values flattened."""
    values = as_numpy(values, name)
    if values.ndim < 2:
        raise ValueError(f"{name}: expected (N, *shape), got shape {values.shape}")
    return values.reshape(len(values), -1)


def _truth_rows(ground_truth: Any, attributions: np.ndarray, shape: tuple) -> np.ndarray:
    """Ground truth flattened to ``(N, d)``: given per sample, or one for all samples."""
    truth = as_numpy(ground_truth, "ground_truth")
    if truth.shape == shape[1:]:
        truth = np.broadcast_to(truth, shape)
    if truth.shape != shape:
        raise ValueError(f"ground_truth: shape {truth.shape} fits neither {shape} nor one sample")
    return truth.reshape(len(attributions), -1)


def _top_k(rows: np.ndarray, k: int) -> np.ndarray:
    """``(N, k)`` indices of the ``k`` largest ``|value|`` per row, most important first."""
    if not 1 <= k <= rows.shape[1]:
        raise ValueError(f"k must lie in [1, {rows.shape[1]}], got {k}")
    return np.argsort(-np.abs(rows), axis=1, kind="stable")[:, :k]


def feature_agreement(attributions: Any, ground_truth: Any, k: int) -> np.ndarray:
    """Feature agreement FA (OpenXAI): share of the top-``k`` features also in the true top-``k``.

    ``ground_truth`` is an attribution (per sample or one for all) whose top-``k`` by ``|value|``
    is the true set, or a boolean mask that *is* the true set (then FA = precision at ``k``).

    Returns:
        ``(N,)`` values in [0, 1]. Higher is better.
    """
    shape = as_numpy(attributions, "attributions").shape
    attr = _rows(attributions, "attributions")
    truth = _truth_rows(ground_truth, attr, shape)
    top = _top_k(attr, k)
    if truth.dtype == bool:
        true_set = truth
    else:
        true_set = np.zeros(truth.shape, dtype=bool)
        np.put_along_axis(true_set, _top_k(truth, k), True, axis=1)
    return np.take_along_axis(true_set, top, axis=1).mean(axis=1)


def rank_agreement(attributions: Any, ground_truth: Any, k: int) -> np.ndarray:
    """Rank agreement RA (OpenXAI): share of the top-``k`` ranks holding the same feature in both.

    Returns:
        ``(N,)`` values in [0, 1]. Higher is better.
    """
    shape = as_numpy(attributions, "attributions").shape
    attr = _rows(attributions, "attributions")
    truth = _truth_rows(ground_truth, attr, shape)
    if truth.dtype == bool:
        raise ValueError("rank_agreement needs a ranked ground-truth attribution, not a mask")
    return (_top_k(attr, k) == _top_k(truth, k)).mean(axis=1)


def mask_localisation(attributions: Any, masks: Any, *, mode: str = "positive") -> np.ndarray:
    """Share of the attribution mass inside the true mask (relevance mass accuracy).

    Arras et al. 2022 ("CLEVR-XAI"): ``R_in / R_total``. For images ``(N, C, H, W)`` with masks
    ``(N, H, W)`` a pixel's relevance is the sum of its channels' attributions; otherwise masks
    are shaped like the attributions. ``mode``: ``positive`` (default, the paper's: only
    positive relevance counts) or ``absolute`` (``|relevance|``).

    Returns:
        ``(N,)`` shares in [0, 1]; ``nan`` where there is no mass at all. Higher is better.
    """
    attr = as_numpy(attributions, "attributions").astype(np.float64)
    masks = as_numpy(masks, "masks").astype(bool)
    if attr.ndim == 4 and masks.shape == (attr.shape[0], *attr.shape[2:]):
        attr = attr.sum(axis=1)
    if masks.shape != attr.shape:
        raise ValueError(f"masks: shape {masks.shape} fits attributions {attr.shape} nowhere")
    if mode not in ("positive", "absolute"):
        raise ValueError(f"mode must be 'positive' or 'absolute', got {mode!r}")
    mass = np.clip(attr, 0, None) if mode == "positive" else np.abs(attr)
    mass, masks = mass.reshape(len(mass), -1), masks.reshape(len(masks), -1)
    total = mass.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (mass * masks).sum(axis=1) / total, np.nan)


def _feature_rows(attributions: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(N, F)`` float64 attributions per feature (summed over each group) and ``(N, 1)``
    feature counts (per sample: superpixel counts differ; the missing groups read 0)."""
    if groups is None:
        rows = _rows(attributions, "attributions").astype(np.float64)
        return rows, np.full((len(rows), 1), rows.shape[1])
    attr = torch.as_tensor(as_numpy(attributions, "attributions")).float()
    labels = feature_labels(attr, groups)
    counts = (labels.reshape(len(labels), -1).max(1).values + 1).expand(len(attr))
    return feature_scores(attr, labels).double().numpy(), counts.numpy()[:, None]


def sparseness(attributions: Any, groups: Any = None) -> np.ndarray:
    """Gini index of ``|attr|`` per sample (Chalasani et al. 2020; Hurley & Rickard 2009).

    ``G = sum_i (2i - d - 1) v_(i) / (d sum_i v_i)`` over the ascending ``v = |attr|`` of the
    ``d`` features (elements, or the groups of ``groups``: see the module docstring): 0 for a
    uniform attribution, at most ``1 - 1/d`` (one-hot). ``nan`` for an all-zero attribution.
    Higher is sparser (simpler).
    """
    rows, d = _feature_rows(attributions, groups)
    v = np.sort(np.abs(rows), axis=1)
    # groups a sample lacks read 0 and sort first: rank the sample's own d features 1..d
    weights = 2 * (np.arange(1, v.shape[1] + 1) - (v.shape[1] - d)) - d - 1
    total = v.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (v * weights).sum(axis=1) / (d[:, 0] * total), np.nan)


def attribution_entropy(attributions: Any, groups: Any = None) -> np.ndarray:
    """Entropy of the normalised ``|attr|`` (Bhatt et al. 2020, "complexity"). Lower is simpler.

    ``H = -sum_i p_i log p_i`` with ``p = |attr| / sum |attr|`` over the features (elements, or
    the groups of ``groups``; natural log, 0 log 0 = 0): 0 for one-hot, ``log d`` for uniform;
    ``nan`` for an all-zero attribution.
    """
    v = np.abs(_feature_rows(attributions, groups)[0])
    total = v.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = v / total
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return np.where(total[:, 0] > 0, terms.sum(axis=1), np.nan)
