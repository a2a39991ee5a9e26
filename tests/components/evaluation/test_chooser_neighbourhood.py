"""No explanation method wins everywhere (Han, Srinivas & Lakkaraju 2022): on one small nonlinear
model the chooser's recommendation follows the neighbourhood its metric perturbs in."""

from __future__ import annotations

import torch
from torch import nn

from components.evaluation.explanation_chooser import choose_method
from components.explain.posthoc.methods import attribute


class _SaturatedWithInteraction(nn.Module):
    """logit0 = 2 tanh(3 x0) + x1 + 3 relu(x2) relu(x3), logit1 = 4.

    Near x0 = 1 the tanh is saturated: its slope is about 0.06 while removing x0 drops the logit
    by about 2. The product term is lost whole when either x2 or x3 is removed.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = 2 * torch.tanh(3 * x[:, 0]) + x[:, 1] + 3 * torch.relu(x[:, 2] * x[:, 3])
        return torch.stack([logit, torch.full_like(logit, 4.0)], dim=1)


def test_the_recommended_method_changes_with_the_neighbourhood():
    model = _SaturatedWithInteraction()
    generator = torch.Generator().manual_seed(0)
    x = torch.tensor([1.0, 0.5, 1.0, 1.0]) + 0.2 * torch.randn(32, 4, generator=generator)
    methods = ("ig", "gradients", "smoothgrad", "occlusion")
    attributions = {m: attribute(model, x, m, target=0, seed=0) for m in methods}

    def best(metric: str) -> dict:
        rows = choose_method(
            model, x, attributions, metric=metric, target=0, k=1, num_bootstrap=200
        )
        return rows[0]

    # A small Gaussian neighbourhood sees the local slopes: the gradient is its exact fit.
    gaussian = best("infidelity_gaussian")
    # Random halves of the features removed: IG's attributions add up to f(x) - f(baseline)
    # and split the product between x2 and x3, as the removal of a random subset does on average.
    subsets = best("infidelity")
    # The single top feature removed (PGI, k=1): occlusion credits the whole product to x2 (and
    # x3), whose removal costs more than x0's; IG ranks the saturated x0 first.
    top_feature = best("pgi")
    assert (gaussian["method"], subsets["method"], top_feature["method"]) == (
        "gradients",
        "ig",
        "occlusion",
    )
    for row in (gaussian, subsets, top_feature):
        assert row["p_best"] > 0.9, row
