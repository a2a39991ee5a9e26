"""DirectPred's linear predictor (Tian, Chen & Ganguli 2021, "Understanding self-supervised
learning dynamics without contrastive pairs"; reference code facebookresearch/luckmatters, ssl/).

The predictor is not trained: it keeps an exponential moving average ``F`` of the correlation
``E[f f^T]`` of its inputs (the online projections), ``F <- rho F + (1 - rho) f^T f / N``, and every
``freq`` steps is set to ``W_p = U diag(p) U^T`` from the eigendecomposition ``F = U diag(s) U^T``
with ``p_j = sqrt(s_j) / max_k sqrt(s_k) + eps`` (the paper's eq. 18 with its defaults
``rho = 0.3``, ``eps = 0.1``; the reference's ``dyn_convert=2``, ``dyn_eps``).
"""

from __future__ import annotations

import torch
from torch import nn


class DirectPredictor(nn.Module):
    """A linear map ``f -> W_p f`` set from the statistics of ``f``, never by gradients."""

    def __init__(self, dim: int, *, rho: float = 0.3, eps: float = 0.1, freq: int = 1) -> None:
        super().__init__()
        self.rho, self.eps, self.freq = rho, eps, freq
        self.register_buffer("corr", torch.zeros(dim, dim))
        self.register_buffer("weight", torch.eye(dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def observe(self, f: torch.Tensor) -> None:
        """Fold a batch of inputs ``(N, D)`` into ``F``; refresh ``W_p`` every ``freq`` steps."""
        f = f.detach()
        batch = f.T @ f / len(f)
        if not torch.isfinite(batch).all():
            return  # a diverged learner: no eigh of NaNs; its divergence check stops the run
        first = int(self.steps) == 0
        self.corr.copy_(batch if first else self.rho * self.corr + (1 - self.rho) * batch)
        if int(self.steps) % self.freq == 0:
            self.weight.copy_(predictor_from_correlation(self.corr, self.eps))
        self.steps += 1

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.weight.T


def predictor_from_correlation(corr: torch.Tensor, eps: float) -> torch.Tensor:
    """``U diag(sqrt(s) / max sqrt(s) + eps) U^T`` for ``corr = U diag(s) U^T``."""
    s, u = torch.linalg.eigh(corr.double())
    root = s.clamp_min(0).sqrt()
    p = root / root.max().clamp_min(1e-12) + eps
    return (u @ torch.diag(p) @ u.T).to(corr.dtype)
