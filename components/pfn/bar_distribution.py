"""The bar ("Riemann") distribution a regression PFN predicts (Müller et al., ICLR 2022,
section 4.1; reference ``bar_distribution.py``): the real line between ``borders[0]`` and
``borders[-1]`` is cut into buckets, the network gives one logit per bucket, and the density is
uniform within a bucket: ``p(y) = softmax(logits)_k / width_k`` for ``y`` in bucket ``k``.

Borders are quantiles of targets drawn from the prior, so every bucket holds the same prior
mass (the reference's ``get_bucket_limits``). Departure: targets outside the borders are
clamped into the outer buckets (the reference's ``FullSupportBarDistribution`` gives the
outer buckets half-normal tails instead).
"""

from __future__ import annotations

import torch


def bucket_borders(targets: torch.Tensor, buckets: int) -> torch.Tensor:
    """``buckets + 1`` borders: equal-mass quantiles of ``targets``, ends at their range."""
    values = targets.flatten().double().sort().values
    inner = torch.quantile(values, torch.linspace(0, 1, buckets + 1, dtype=torch.float64)[1:-1])
    return torch.cat([values[:1], inner, values[-1:]]).float()


def _widths(borders: torch.Tensor) -> torch.Tensor:
    return borders[1:] - borders[:-1]


def bar_nll(logits: torch.Tensor, y: torch.Tensor, borders: torch.Tensor) -> torch.Tensor:
    """Negative log density of ``y`` under the bar distribution of ``logits`` (elementwise)."""
    bucket = torch.searchsorted(borders, y.contiguous()) - 1
    bucket = bucket.clamp(0, len(borders) - 2)
    log_density = torch.log_softmax(logits, -1) - torch.log(_widths(borders))
    return -log_density.gather(-1, bucket.unsqueeze(-1)).squeeze(-1)


def bar_mean_variance(logits: torch.Tensor, borders: torch.Tensor):
    """The predictive mean and variance: bucket ``k`` is uniform, with mean ``c_k`` (its middle)
    and variance ``w_k^2 / 12``, so ``Var = sum_k p_k (c_k^2 + w_k^2 / 12) - mean^2``."""
    p = torch.softmax(logits, -1)
    widths = _widths(borders)
    centres = borders[:-1] + widths / 2
    mean = p @ centres
    second = p @ (centres.square() + widths.square() / 12)
    return mean, (second - mean.square()).clamp_min(0)
