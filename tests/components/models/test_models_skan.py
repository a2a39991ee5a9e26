"""S-KAN / S-ConvKAN: selectable layers, the three-phase schedule, function fitting, refusals."""

from __future__ import annotations

import math

import pytest
import torch

from components.models import create_model
from components.models.base import TrainingStage
from components.models.kan_layers import (
    SPACES,
    SelectableKANLinear,
    bspline_basis,
    kan_network,
    narrow,
)


def _cox_de_boor(x: torch.Tensor, grid: int, order: int = 3) -> torch.Tensor:
    """KAN's B-spline bases by the textbook recursion, on the same extended uniform knots."""
    knots = torch.arange(-order, grid + order + 1) * (2.0 / grid) - 1.0
    x = x.unsqueeze(-1)
    bases = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)
    for k in range(1, order + 1):
        left = (x - knots[: -(k + 1)]) / (knots[k:-1] - knots[: -(k + 1)])
        right = (knots[k + 1 :] - x) / (knots[k + 1 :] - knots[1:-k])
        bases = left * bases[..., :-1] + right * bases[..., 1:]
    return bases


def test_bspline_bases_are_cox_de_boor_and_a_partition_of_unity():
    x = torch.linspace(-3.0, 3.0, 601).view(-1, 1)
    for grid in (2, 5):
        assert torch.allclose(bspline_basis(x, grid), _cox_de_boor(x, grid), atol=1e-6)
    inside = bspline_basis(torch.linspace(-1.0, 0.999, 50).view(-1, 1), 5)
    assert torch.allclose(inside.sum(-1), torch.ones(50, 1))


def test_selection_is_a_distribution_and_narrowing_keeps_the_kept_spaces_output():
    torch.manual_seed(0)
    layer = SelectableKANLinear(3, 4, grid=4)
    assert torch.equal(layer.selection_weights(), torch.full((4, len(SPACES)), 0.25))
    with torch.no_grad():
        layer.selection.normal_()
    x = torch.randn(6, 3)
    parts = layer.space_outputs(x) * layer.selection_weights()
    layer.select(2)
    weights = layer.selection_weights()
    assert layer.kept.sum(-1).tolist() == [2] * 4
    assert torch.allclose(weights.sum(-1), torch.ones(4)) and bool(
        (weights[~layer.kept] == 0).all()
    )
    # Only the dropped spaces leave the output: the kept ones contribute exactly as before.
    assert torch.allclose(layer(x), (parts * layer.kept).sum(-1), atol=1e-6)
    kept = layer.kept.clone()
    layer.select(2)
    assert torch.equal(layer.kept, kept)  # idempotent (a resumed stage narrows again)


def _fit(target, widths, spaces, steps=150, seed=0):
    """Full-batch Adam on 128 points of ``[-1, 1]^d`` with the S-KAN phases (0.3 / 0.1 / 0.6);
    returns the test RMSE and the first layer's selection weights after the full phase."""
    gen = torch.Generator().manual_seed(seed)
    x, x_test = (torch.rand(n, widths[0], generator=gen) * 2 - 1 for n in (128, 500))
    torch.manual_seed(seed)
    net = kan_network(widths, spaces=spaces, grid=5)
    opt = torch.optim.Adam(net.parameters(), 0.05)
    selected = None
    for step in range(steps):
        if step == int(0.3 * steps):
            selected = net[0].selection_weights().detach().clone()
            narrow(net, 2)
        if step == int(0.4 * steps):
            narrow(net, 1)
        loss = (net(x) - target(x)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (net(x_test) - target(x_test)).pow(2).mean().sqrt().item(), selected


def test_function_fitting_reaches_the_stated_error_and_beats_a_fixed_basis():
    def sine(x):
        return torch.sin(math.pi * x)

    def product(x):
        return x[:, :1] * x[:, 1:]

    rmse, selected = _fit(sine, (1, 1), SPACES)
    fourier, _ = _fit(sine, (1, 1), ("fourier",))
    # Measured (seed 0): 0.0035 vs Fourier-only 0.019; B-spline-only 0.004, RBF-only 0.25.
    assert rmse < 0.01 and rmse < 0.5 * fourier
    assert selected.max() > 0.3  # the weights moved away from the uniform 0.25 during "full"
    product_rmse, _ = _fit(product, (2, 2, 1), SPACES)
    assert product_rmse < 0.05  # measured 0.027 (the paper's x*y task)


def test_schedule_narrows_at_each_phase():
    model = create_model("skan", input_shape=(5,), num_classes=3, widths=[4], grid=3)
    stages = model.training_stages(10)
    assert [(s.name, s.epochs) for s in stages] == [("full", 3), ("select", 1), ("prune", 6)]
    assert [s.name for s in model.training_stages(2)] == ["full"]
    model.start_stage(stages[1])
    assert {int(k) for layer in model.layers for k in layer.kept.sum(-1)} == {2}
    model.start_stage(TrainingStage("prune", 1))
    assert all(bool((layer.kept.sum(-1) == 1).all()) for layer in model.layers)
    restored = create_model("skan", input_shape=(5,), num_classes=3, widths=[4], grid=3)
    restored.load_state_dict(model.state_dict())  # the pruned selection travels in checkpoints
    assert all(bool((layer.kept.sum(-1) == 1).all()) for layer in restored.layers)


@pytest.mark.parametrize(
    ("name", "shape", "params", "message"),
    [
        ("skan", (5,), {"grid": 1}, r"model\.params\.grid must be an int >= 2"),
        ("skan", (5,), {"spaces": ["bspline", "wavelet"]}, r"model\.params\.spaces"),
        ("skan", (5,), {"keep": 5}, r"model\.params\.keep must be an int in \[1, 4\]"),
        ("skan", (5,), {"widths": [0]}, r"model\.params\.widths must be ints >= 1"),
        ("skan", (5,), {"full_fraction": 0.8, "select_fraction": 0.3}, r"full_fraction"),
        ("skan_conv", (13,), {}, r"needs image input .*use 'skan' for tabular"),
        ("skan_conv", (1, 8, 8), {"stride": 3}, r"model\.params\.stride must be 1 or 2"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(name, shape, params, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, input_shape=shape, num_classes=3, **params)
