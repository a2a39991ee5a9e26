"""Explanation stability: sensitivity-max against captum, RIS/ROS/RRS closed forms and the floor."""

import numpy as np
import pytest
import torch
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import nn

from components.evaluation.explanation_robustness import (
    relative_stability,
    ris,
    ros,
    rrs,
    sensitivity_max,
)


def linear_model(seed=0, d=6, classes=3):
    torch.manual_seed(seed)
    return nn.Linear(d, classes)


def inputs(n=8, d=6, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_sensitivity_max_equals_captum_on_the_same_perturbations():
    model = linear_model()
    weight = model.weight.detach()

    def gradient_x_input(x):
        return (weight[0] * x).numpy()  # an array: the wrapper converts it

    x = inputs()
    ours = sensitivity_max(gradient_x_input, x, radius=0.1, n_perturb_samples=6, seed=4)

    generator = torch.Generator().manual_seed(4)

    def perturb(batch):
        return batch + (2 * torch.rand(batch.shape, generator=generator) - 1) * 0.1

    def explanation_func(batch):
        return (weight[0] * (batch[0] if isinstance(batch, tuple) else batch),)

    expected = captum_sensitivity_max(explanation_func, x, perturb, n_perturb_samples=6)
    np.testing.assert_array_equal(ours, expected.double().numpy())
    # |w * d| / |w * x| with |d|_inf <= r
    bound = 0.1 * weight[0].norm() / (weight[0] * x).norm(dim=1)
    assert np.all(ours > 0) and np.all(ours <= bound.numpy() + 1e-6)


def test_sensitivity_of_a_constant_explanation_is_zero_and_target_reaches_the_explainer():
    model = linear_model()

    def gradient(x, target):
        return model.weight.detach()[target]

    # one class per sample: zero only if captum's repeated rows keep their own targets
    values = sensitivity_max(gradient, inputs(), n_perturb_samples=3, target=np.arange(8) % 3)
    np.testing.assert_array_equal(values, 0.0)


def test_ris_of_an_input_proportional_explanation_is_one():
    model = linear_model()
    x = inputs()
    # e(x) = 3x: the explanation changes exactly as much, relatively, as the input
    for elementwise in (False, True):
        values = ris(model, x, lambda z: 3 * z, same_prediction=False, elementwise=elementwise)
        np.testing.assert_allclose(values, 1.0, rtol=1e-5)
    # a representation that is a rescaled input gives RRS = RIS
    np.testing.assert_allclose(
        rrs(model, x, lambda z: z**2, lambda z: 2 * z, same_prediction=False),
        ris(model, x, lambda z: z**2, same_prediction=False),
        rtol=1e-6,
    )


def test_ros_of_a_constant_explanation_is_zero_and_runs_are_seeded():
    model = linear_model()
    x = inputs()
    constant = lambda z: torch.ones_like(z)  # noqa: E731
    np.testing.assert_array_equal(ros(model, x, constant), 0.0)
    first = ros(model, x, lambda z: z**3, seed=5, num_perturbations=5)
    np.testing.assert_array_equal(first, ros(model, x, lambda z: z**3, seed=5, num_perturbations=5))
    assert first.shape == (8,) and np.all(first >= 0)


def test_the_eps_floor_keeps_ratios_finite():
    model = linear_model()
    x = inputs()
    noise = torch.Generator().manual_seed(0)

    def jittery(z):
        return z + 0.01 * torch.randn(z.shape, generator=noise)

    # radius 0: the input does not move at all, yet the explanation does
    values = ris(model, x, jittery, radius=0.0, num_perturbations=3, eps=1e-6)
    assert np.all(np.isfinite(values)) and np.all(values > 1e3)
    # an all-zero explanation at x, non-zero at x': its relative change is floored too
    flips = lambda z: torch.zeros_like(z) if torch.equal(z, x) else torch.ones_like(z)  # noqa: E731
    assert np.all(np.isfinite(ris(model, x, flips, num_perturbations=2)))
    assert np.all(np.isfinite(ris(model, x, flips, num_perturbations=2, elementwise=True)))


def test_samples_whose_prediction_always_flips_are_nan():
    class Parity(nn.Module):
        """Predicts class 1 exactly at x = 0, class 0 everywhere else."""

        def forward(self, x):
            at_zero = (x.abs().sum(dim=1, keepdim=True) == 0).float()
            return torch.cat([1 - at_zero, at_zero], dim=1)

    x = torch.cat([torch.zeros(1, 4), torch.ones(2, 4)])
    values = relative_stability(Parity(), x, lambda z: 2 * z, radius=0.1, num_perturbations=3)
    assert np.isnan(values[0]) and np.all(np.isfinite(values[1:]))
    with pytest.raises(ValueError, match="representation_fn"):
        relative_stability(Parity(), x, lambda z: z, kind="representation")
