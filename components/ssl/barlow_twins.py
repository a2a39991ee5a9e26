"""Barlow Twins' objective (Zbontar et al. 2021; reference code facebookresearch/barlowtwins).

The two views' projections are batch-normalised per dimension (the reference's
``BatchNorm1d(affine=False)``), their cross-correlation ``C = z1n^T z2n / N`` is pulled to the
identity: ``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2``. The reference's lambda is
``0.0051`` for its 8192-wide projector; ours defaults to that value scaled to keep
``lambda * width`` (``SSLConfig.off_diagonal_weight``), since our projectors are 64-1024 wide.
"""

from __future__ import annotations

import torch

_BN_EPS = 1e-5  # BatchNorm1d's default


def standardize(z: torch.Tensor) -> torch.Tensor:
    """Per-dimension batch standardisation, as ``BatchNorm1d(affine=False)`` in training mode."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + _BN_EPS)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The ``(D, D)`` cross-correlation of two ``(N, D)`` batches of projections."""
    return standardize(z1).T @ standardize(z2) / len(z1)


def off_diagonal(c: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    n = c.shape[0]
    return c.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> dict[str, torch.Tensor]:
    """Named terms ``on_diag``, ``off_diag`` (unweighted) and ``total``."""
    c = cross_correlation(z1, z2)
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return {"total": on_diag + lambd * off_diag, "on_diag": on_diag, "off_diag": off_diag}
