"""JEPA vs MAE on deep linear encoders (Littwin et al. 2024): which features each learns first."""

from __future__ import annotations

import pytest
import torch

from components.ssl.deep_linear import (
    critical_time,
    fixed_point,
    learning_order,
    learning_times,
    static_linear_views,
    train_deep_linear,
)

# Covariance lambda rises while the regression coefficient rho falls, and the covariance with the
# other view (lambda * rho = 0.9, 1.1, 1.4) rises with lambda: the two orders are opposite.
LAMBDAS = (1.0, 2.0, 4.0)
RHOS = (0.9, 0.55, 0.35)
DEPTH, INIT = 3, 0.25


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread avoids oversubscription on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sample_statistics_are_the_papers(one_thread):
    x, y = static_linear_views(LAMBDAS, RHOS, n=64, seed=1)
    torch.testing.assert_close(x.T @ x / 64, torch.diag(torch.tensor(LAMBDAS)), atol=1e-5, rtol=0)
    lam_rho = torch.tensor(LAMBDAS) * torch.tensor(RHOS)
    torch.testing.assert_close(y.T @ x / 64, torch.diag(lam_rho), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("objective", "lr", "steps", "order"),
    [
        # JEPA: highest regression coefficient first (the paper's implicit bias)
        ("jepa", 1.0, 640, [0, 1, 2]),
        # MAE: highest covariance first
        ("mae", 0.1, 100, [2, 1, 0]),
    ],
)
def test_jepa_learns_by_rho_and_mae_by_covariance(one_thread, objective, lr, steps, order):
    x, y = static_linear_views(LAMBDAS, RHOS, n=64, seed=0)
    run = train_deep_linear(
        objective, x, y, depth=DEPTH, steps=steps, lr=lr, init_scale=INIT, seed=3
    )
    targets = fixed_point(objective, RHOS, DEPTH)
    assert learning_order(run.norms, targets) == order
    # each feature settles at the paper's fixed point (rho^L for JEPA, rho^(L/(L+1)) for MAE) ...
    learned = order[: 2 if objective == "jepa" else 3]  # the last JEPA feature is still rising
    torch.testing.assert_close(run.norms[-1, learned].double(), targets[learned], rtol=0.02, atol=0)
    # ... at the critical time of the paper's gradient-flow ODE (steps = time / lr)
    expected = torch.tensor(
        [
            critical_time(objective, lam, rho, DEPTH, INIT) / lr
            for lam, rho in zip(LAMBDAS, RHOS, strict=True)
        ]
    )
    torch.testing.assert_close(
        learning_times(run.norms, targets).double(), expected.double(), rtol=0.04, atol=2
    )


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="rho"):
        static_linear_views((1.0,), (1.5,), n=8)
    x, y = static_linear_views(LAMBDAS, RHOS, n=16)
    with pytest.raises(ValueError, match="objective"):
        train_deep_linear("byol", x, y)
    with pytest.raises(ValueError, match="already reach"):
        run = train_deep_linear("jepa", x, y, depth=1, steps=1, init_scale=0.5)
        learning_times(run.norms, fixed_point("jepa", RHOS, 1))
