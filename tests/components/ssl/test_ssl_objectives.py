"""Barlow Twins and DirectPred on tiny encoders: closed forms of the losses and the predictor,
and the papers' collapse claims on 640 digits (tiny cnn trunk, batch size 64, seeded)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from components.ssl.barlow_twins import barlow_twins_loss, cross_correlation
from components.ssl.config import SSLConfig
from components.ssl.directpred import DirectPredictor
from components.ssl.learner import pretrain_encoder
from components.ssl.views import ViewConfig, augment


@pytest.fixture(scope="module")
def digits_images() -> torch.Tensor:
    x = torch.tensor(load_digits().data[:640], dtype=torch.float32)
    return ((x - x.mean(0)) / (x.std(0) + 1e-6)).view(-1, 1, 8, 8)


def test_barlow_twins_loss_is_zero_at_the_identity_and_counts_off_diagonals():
    # Columns of a scaled Hadamard-like +-1 matrix: standardised, mutually uncorrelated.
    h = torch.tensor(
        [[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float
    )
    z = h[:, 1:] * 3.0 + 5.0  # shift and scale do not matter after batch normalisation
    assert torch.allclose(cross_correlation(z, z), torch.eye(3), atol=1e-4)
    assert barlow_twins_loss(z, z, lambd=0.5)["total"].item() == pytest.approx(0.0, abs=1e-6)
    # Duplicated column: C = [[1, 1], [1, 1]]: on-diagonal 0, two off-diagonal ones.
    twin = torch.stack([z[:, 0], z[:, 0]], dim=1)
    terms = barlow_twins_loss(twin, twin, lambd=0.25)
    assert terms["off_diag"].item() == pytest.approx(2.0, abs=1e-4)
    assert terms["total"].item() == pytest.approx(0.5, abs=1e-4)


def test_directpred_sets_the_predictor_from_the_correlation_eigenvalues():
    predictor = DirectPredictor(2, rho=0.3, eps=0.1)
    f = torch.tensor([[2.0, 1.0], [-2.0, 1.0], [2.0, -1.0], [-2.0, -1.0]])  # F = diag(4, 1)
    predictor.observe(f)
    # p_j = sqrt(s_j) / max sqrt(s) + eps = (1.1, 0.6) on the eigenvectors e1, e2
    assert torch.allclose(predictor.weight, torch.diag(torch.tensor([1.1, 0.6])), atol=1e-5)
    predictor.observe(f[:, [1, 0]])  # F <- 0.3 diag(4, 1) + 0.7 diag(1, 4) = diag(1.9, 3.1)
    expected = torch.tensor([(1.9 / 3.1) ** 0.5 + 0.1, 1.1])
    assert torch.allclose(predictor.weight, torch.diag(expected), atol=1e-5)


def test_views_differ_per_sample_and_keep_the_shape():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 8, 8).repeat(16, 1, 1, 1)
    views = augment(x, ViewConfig())
    assert views.shape == x.shape
    assert torch.unique(views.flatten(1), dim=0).shape[0] == 16  # one crop per sample
    rows = augment(torch.ones(4, 1000), ViewConfig(noise_std=0.0, feature_drop=0.25))
    assert (rows == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)


def test_barlow_twins_at_batch_64_reduces_redundancy_without_collapse(digits_images):
    # lambda: the default, the reference's 0.0051 scaled to width 64 (0.65)
    cfg = SSLConfig(objective="barlow_twins", projector_width=64, batch_size=64, epochs=6)
    history = pretrain_encoder("cnn", digits_images, cfg, tiny=True, num_classes=10).history
    first, last = history[0], history[-1]
    # Off-diagonal mass of two views' cross-correlation and of one view's correlation fall...
    assert last["off_diagonal_mass"] < 0.6 * first["off_diagonal_mass"]
    assert last["redundancy"] < first["redundancy"]
    # ...and nothing collapses: the 64-d projection's effective rank rises above 36 (from 33)
    # and the 64-d embedding's stays above 40 (45 untrained).
    assert last["projection_rank"] > 36
    assert last["effective_rank"] > 40


def test_directpred_collapses_without_the_stop_gradient_and_not_with_it(digits_images):
    def run(stop_gradient: bool) -> list[dict]:
        cfg = SSLConfig(
            objective="directpred", projector_width=64, epochs=6, stop_gradient=stop_gradient
        )
        return pretrain_encoder("cnn", digits_images, cfg, tiny=True, num_classes=10).history

    with_sg, without_sg = run(True), run(False)
    start = with_sg[0]["projection_std"]  # same seed: the same untrained net
    assert without_sg[0]["projection_std"] == start
    # Without it the projections of all inputs align (std of the unit vectors shrinks to under
    # half its start); with it they spread out.
    assert without_sg[-1]["projection_std"] < 0.5 * start
    assert with_sg[-1]["projection_std"] > start
    assert without_sg[-1]["projection_std"] < 0.4 * with_sg[-1]["projection_std"]
