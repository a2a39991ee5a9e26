"""Explanation quality: IG completeness, FA/RA, mask localisation, Gini sparseness and entropy."""

import numpy as np
import pytest
import torch
from torch import nn

from components.evaluation.explanation_quality import (
    attribution_entropy,
    completeness_gap,
    feature_agreement,
    mask_localisation,
    rank_agreement,
    sparseness,
)
from components.explain.integrated_gradients import integrated_gradients


def test_completeness_holds_for_exact_linear_attributions_and_fails_when_scaled():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x = torch.randn(6, 5)
    # target 1: logit_1(x) - logit_1(0) = sum_i w_1i x_i
    exact = model.weight.detach()[1] * x
    gap, ok = completeness_gap(model, x, exact, target=1)
    assert ok.all() and gap.max() < 1e-5
    gap, ok = completeness_gap(model, x, 2 * exact, target=1)
    np.testing.assert_allclose(gap, exact.sum(dim=1).abs().numpy(), rtol=1e-5)
    assert not ok.any()


def test_completeness_gap_is_integrated_gradients_convergence_delta():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(5, 4)
    attr, delta = integrated_gradients(model, x, baseline=0.5, n_steps=16)
    gap, ok = completeness_gap(model, x, attr, baseline=0.5)
    np.testing.assert_allclose(gap, np.abs(delta), atol=1e-5)
    assert ok.all()


def test_feature_and_rank_agreement_by_hand():
    attr = np.array([[3.0, -2.0, 1.0, 0.0], [0.1, 4.0, 0.0, -1.0], [4.0, 0.1, 0.0, 1.0]])
    truth = np.array([0.5, 4.0, 0.0, 1.0])  # top-2: feature 1, then 3
    # top-2 of the rows: {0, 1}, [1, 3], [0, 3]
    np.testing.assert_allclose(feature_agreement(attr, truth, 2), [0.5, 1.0, 0.5])
    np.testing.assert_allclose(rank_agreement(attr, truth, 2), [0.0, 1.0, 0.5])
    mask = np.array([False, True, True, False])
    np.testing.assert_allclose(feature_agreement(attr, mask, 2), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="mask"):
        rank_agreement(attr, mask, 2)
    with pytest.raises(ValueError, match="k must"):
        feature_agreement(attr, truth, 5)


def test_mask_localisation_of_images_sums_channels():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, :2, :2] = True
    inside = np.zeros((2, 3, 4, 4))
    inside[:, :, :2, :2] = np.random.default_rng(0).random((2, 3, 2, 2))
    np.testing.assert_allclose(mask_localisation(inside, masks), 1.0)
    half = inside.copy()
    half[:, 0, 3, 3] = inside[:, :, :2, :2].sum(axis=(1, 2, 3))
    np.testing.assert_allclose(mask_localisation(half, masks), 0.5)
    # negative mass outside is ignored by default and counted with mode="absolute"
    negative = inside.copy()
    negative[:, 1, 3, 3] = -inside[:, :, :2, :2].sum(axis=(1, 2, 3))
    np.testing.assert_allclose(mask_localisation(negative, masks), 1.0)
    np.testing.assert_allclose(mask_localisation(negative, masks, mode="absolute"), 0.5)
    assert np.isnan(mask_localisation(np.zeros((1, 3, 4, 4)), masks[:1]))[0]


def test_gini_sparseness_bounds_and_entropy():
    d = 10
    one_hot = np.zeros((1, d))
    one_hot[0, 3] = -2.5
    uniform = np.full((1, d), 0.7)
    others = np.random.default_rng(0).normal(size=(50, d))
    np.testing.assert_allclose(sparseness(one_hot), 1 - 1 / d)
    np.testing.assert_allclose(sparseness(uniform), 0.0, atol=1e-12)
    assert np.all(sparseness(others) < 1 - 1 / d) and np.all(sparseness(others) > 0)
    np.testing.assert_allclose(sparseness(3 * others), sparseness(others))
    np.testing.assert_allclose(attribution_entropy(uniform), np.log(d))
    np.testing.assert_allclose(attribution_entropy(one_hot), 0.0)
    assert np.all(attribution_entropy(others) < np.log(d))
    assert np.isnan(sparseness(np.zeros((1, d))))[0]
    assert np.isnan(attribution_entropy(np.zeros((1, d))))[0]
    assert sparseness(np.zeros((4, 3, 2, 2)) + 1).shape == (4,)
