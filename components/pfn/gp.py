"""The exact GP posterior predictive in closed form: what a PFN fitted on the GP prior with
fixed hyperparameters should reproduce (Rasmussen & Williams 2006, eq. 2.22-2.24, plus the
observation noise for the predictive of ``y``)."""

from __future__ import annotations

import torch

from components.pfn.priors import rbf_kernel


def gp_posterior(
    x_context: torch.Tensor,
    y_context: torch.Tensor,
    x_query: torch.Tensor,
    *,
    lengthscale: float,
    outputscale: float,
    noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``y*`` at ``x_query`` ``(M, F)`` given ``(x_context (N, F),
    y_context (N,))``: ``k*^T (K + s I)^-1 y`` and ``k** - k*^T (K + s I)^-1 k* + s``.
    With no context, the prior ``(0, outputscale + noise)``."""
    xc, yc, xq = x_context.double(), y_context.double(), x_query.double()
    prior_var = torch.full((len(xq),), outputscale + noise, dtype=torch.float64)
    if len(xc) == 0:
        return torch.zeros(len(xq), dtype=torch.float64), prior_var
    k = rbf_kernel(xc, xc, lengthscale, outputscale) + noise * torch.eye(len(xc))
    k_star = rbf_kernel(xc, xq, lengthscale, outputscale)
    chol = torch.linalg.cholesky(k)
    alpha = torch.cholesky_solve(yc[:, None], chol).squeeze(-1)
    v = torch.linalg.solve_triangular(chol, k_star, upper=False)
    return k_star.T @ alpha, prior_var - v.square().sum(0)
