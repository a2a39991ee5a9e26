"""Borup & Andersen's kernel ridge self-distillation: closed forms against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from components.training.self_distill_theory import (
    distill_steps,
    fit_from_initial,
    limit_fit,
    optimal_weight,
    projection_weight,
    ridge_fit,
    spectrum,
    step_multipliers,
)

LAM = 1.0


def rbf(a: np.ndarray, b: np.ndarray, gamma: float = 30.0) -> np.ndarray:
    return np.exp(-gamma * (a[:, None] - b[None, :]) ** 2)


@pytest.fixture(scope="module")
def problem():
    """The paper's toy setting: noisy samples of sin(2 pi x), an RBF kernel, a small ridge."""
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, 25)
    truth = np.sin(2 * np.pi * x)
    return x, truth, truth + rng.normal(0, 0.5, x.shape)


def test_any_step_is_a_function_of_the_initial_fit(problem):
    x, _, y = problem
    gram, weights = rbf(x, x), [0.3, 0.8, 0.5, 0.1]
    refitted = distill_steps(gram, y, LAM, weights)
    spec = spectrum(gram, LAM)
    for step in range(len(weights) + 1):
        closed = fit_from_initial(spec, refitted[0], weights[:step])
        np.testing.assert_allclose(closed, refitted[step], atol=1e-8)


def test_optimal_weight_matches_a_fine_grid_search(problem):
    """At every step, the closed-form weight is the grid's best to within one grid step (1e-4).

    The grid refits each candidate student (kernel ridge on its mixed targets) and scores it
    against the noiseless function."""
    x, truth, y = problem
    gram = rbf(x, x)
    spec = spectrum(gram, LAM)
    grid = np.linspace(0, 1, 10_001)
    taken: list[float] = []
    for _ in range(3):
        teacher = distill_steps(gram, y, LAM, taken)[-1]
        solve = np.linalg.solve(gram + LAM * np.eye(len(x)), np.stack([y, teacher], 1))
        errors = [np.sum((gram @ solve @ [w, 1 - w] - truth) ** 2) for w in grid]
        best = grid[int(np.argmin(errors))]
        closed = optimal_weight(spec, y, truth, taken)
        assert 0.01 < best < 0.99  # an interior optimum: the grid's edges would hide a mismatch
        assert abs(closed - best) <= 1e-4
        taken.append(closed)
    # Guidance pays: the optimally weighted steps beat the initial fit on the noiseless truth.
    fits = distill_steps(gram, y, LAM, taken)
    assert np.sum((fits[-1] - truth) ** 2) < 0.9 * np.sum((fits[0] - truth) ** 2)


def test_the_estimate_from_held_out_targets_picks_the_best_validation_student(problem):
    """Deep-learning estimate: two students (ground truth only, teacher only) and held-out
    targets give the weight whose student has the least validation error on a fine grid."""
    x, _, y = problem
    rng = np.random.default_rng(1)
    x_val = rng.uniform(0, 1, 40)
    y_val = np.sin(2 * np.pi * x_val) + rng.normal(0, 0.5, x_val.shape)
    gram = rbf(x, x)
    teacher = ridge_fit(gram, y, LAM)
    coef = np.linalg.solve(gram + LAM * np.eye(len(x)), np.stack([y, teacher], 1))
    at_one, at_zero = (rbf(x_val, x) @ coef).T
    estimate = projection_weight(y_val, at_zero, at_one)
    grid = np.linspace(-1, 2, 30_001)
    errors = [np.sum((w * at_one + (1 - w) * at_zero - y_val) ** 2) for w in grid]
    assert abs(estimate - grid[int(np.argmin(errors))]) <= 1e-4


@pytest.mark.parametrize("alpha", [0.25, 0.6])
def test_infinite_steps_equal_ridge_with_amplified_regularisation(problem, alpha):
    x, _, y = problem
    gram = rbf(x, x)
    refitted = distill_steps(gram, y, LAM, [alpha] * 200)[-1]
    amplified = limit_fit(gram, y, LAM, alpha)  # penalty lam / alpha
    np.testing.assert_allclose(refitted, amplified, atol=1e-8)
    assert np.max(np.abs(amplified - ridge_fit(gram, y, LAM))) > 0.05  # not the plain fit
    spec = spectrum(gram, LAM)
    d = spec.values
    np.testing.assert_allclose(
        step_multipliers(spec, [alpha] * 200), alpha * d / (alpha * d + LAM), atol=1e-10
    )


def test_bad_inputs_say_what_is_wrong(problem):
    x, _, y = problem
    with pytest.raises(ValueError, match="ridge penalty must be positive"):
        spectrum(rbf(x, x), 0.0)
    with pytest.raises(ValueError, match=r"weight in \(0, 1\]"):
        limit_fit(rbf(x, x), y, LAM, 0.0)
    with pytest.raises(ValueError, match="undetermined"):
        projection_weight(y, y, y)
