"""Deep linear JEPA vs MAE: which features each objective learns first.

Littwin, Saremi, Advani, Thilak, Nakkiran, Huang and Susskind 2024, "How JEPA Avoids Noisy Features:
The Implicit Bias of Deep Linear Self Distillation Networks" (NeurIPS; arXiv 2407.03475). No
reference code is published; this follows the paper's text. Two views ``x`` and ``y`` of a sample
have diagonal statistics ``E[x x^T] = diag(lambda)`` and ``E[y x^T] = diag(lambda * rho)``: feature
``i`` has covariance ``lambda_i`` and regression coefficient ``rho_i`` (``y_i ~ rho_i x_i``). The
encoder is a product of ``L`` square linear layers ``W = W_L ... W_1``, and

- JEPA (self-distillation) predicts the *target encoder's* latent of the other view,
  ``1/2 |V W x - sg(W_target y)|^2``, with ``W_target`` the online encoder under stop-gradient
  (``ema=0``, the paper's analysis) or its exponential moving average;
- MAE reconstructs the other view in input space, ``1/2 |V W x - y|^2``.

From a small balanced initialisation both learn one feature at a time. The paper's finding: MAE
learns features in the order of their covariance ``lambda_i rho_i`` (noisy, high-variance features
first), while JEPA is biased towards high-influence features (large ``rho_i``), a bias that grows
with depth. With balanced weights each feature's encoder norm ``|W e_i|`` settles at ``rho_i^L``
under JEPA (the predictor stops at ``rho_i``) and at ``rho_i^(L/(L+1))`` under MAE (the end-to-end
map stops at ``rho_i``): :func:`fixed_point`.

Expanding the JEPA integral in :func:`critical_time` gives the paper's form
``t* ~ (1/lambda) sum_{n=1}^{2L-1} 1 / (n rho^(2L-n) eps^(n/L))`` (``eps = init_scale^L``): terms
with high powers of ``1/rho`` weigh in more as ``L`` grows and as ``eps`` is not negligible beside
``rho``, which is where the order by ``rho`` overrides the order by ``lambda rho``; the MAE time is
``~ 1/(lambda rho)`` throughout.

Data: the paper's static linear model, a latent ``z`` seen through two independent noises,
``x = z + xi``, ``y = z + xi'``; with ``var z_i = rho_i lambda_i`` and ``var xi_i = (1 - rho_i)
lambda_i`` the statistics above hold exactly in expectation, so a noisy feature is one with large
``lambda`` and small ``rho``. Departure: training is full-batch gradient descent on a finite sample
(the paper integrates the gradient-flow ODE), by default on a sample drawn so that its statistics
equal the population ones exactly (sampling noise in ``rho`` would otherwise move the fixed points
``rho^L`` and blur the order between close features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

OBJECTIVES = ("jepa", "mae")


def static_linear_views(
    lambdas: Sequence[float], rhos: Sequence[float], n: int, seed: int = 0, exact: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views ``(x, y)``, each (n, d), of the static linear model with the given statistics.

    Args:
        exact: draw the latent and the two noises as orthogonal columns scaled to unit second
            moment, so the *sample* statistics equal the population ones exactly (``x^T x / n =
            diag(lambda)``, ``y^T x / n = diag(lambda rho)``); otherwise plain Gaussian draws.

    Raises:
        ValueError: if the lengths differ, a ``lambda`` is not positive, a ``rho`` is outside (0, 1]
            or ``exact`` is asked with ``n < 3 d``.
    """
    lam = torch.as_tensor(lambdas, dtype=torch.float64)
    rho = torch.as_tensor(rhos, dtype=torch.float64)
    if lam.shape != rho.shape or lam.ndim != 1:
        raise ValueError(f"lambdas and rhos must be equal-length 1-D, got {lam.shape}, {rho.shape}")
    if (lam <= 0).any() or (rho <= 0).any() or (rho > 1).any():
        raise ValueError(f"need lambda > 0 and 0 < rho <= 1, got {lambdas} and {rhos}")
    d = len(lam)
    if exact and n < 3 * d:
        raise ValueError(f"exact statistics need n >= 3 * d = {3 * d} samples, got {n}")
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randn(n, 3 * d, generator=gen, dtype=torch.float64)
    if exact:
        draws = torch.linalg.qr(draws)[0] * n**0.5
    z, xi, xi_prime = draws.split(d, dim=1)
    z = z * (rho * lam).sqrt()
    noise = ((1 - rho) * lam).sqrt()
    return (z + xi * noise).float(), (z + xi_prime * noise).float()


def fixed_point(objective: str, rhos: Sequence[float], depth: int) -> torch.Tensor:
    """Each feature's encoder norm ``|W e_i|`` at convergence from a balanced initialisation."""
    rho = torch.as_tensor(rhos, dtype=torch.float64)
    if objective == "jepa":
        return rho**depth
    if objective == "mae":
        return rho ** (depth / (depth + 1))
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def critical_time(
    objective: str,
    lam: float,
    rho: float,
    depth: int,
    init_scale: float,
    fraction: float = 0.8,
) -> float:
    """Gradient-flow time for one feature's encoder norm to reach ``fraction`` of its fixed point.

    With balanced weights every layer's magnitude ``u`` along the feature follows the paper's ODE,
    ``du/dt = lam u^(2L) (rho - u)`` for JEPA and ``du/dt = lam u^L (rho - u^(L+1))`` for MAE, from
    ``u = init_scale``; this integrates ``dt = du / (du/dt)`` up to ``|W e_i| = u^L`` reaching the
    threshold. Gradient descent with step ``lr`` needs about ``critical_time / lr`` steps.
    """
    from scipy.integrate import quad

    end = (fraction * float(fixed_point(objective, [rho], depth)[0])) ** (1.0 / depth)
    if objective == "jepa":
        rate = lambda u: lam * u ** (2 * depth) * (rho - u)  # noqa: E731
    else:
        rate = lambda u: lam * u**depth * (rho - u ** (depth + 1))  # noqa: E731
    if not 0.0 < init_scale < end:
        raise ValueError(f"init_scale must lie in (0, {end:.4g}) to start below the threshold")
    return quad(lambda u: 1.0 / rate(u), init_scale, end)[0]


@dataclass(frozen=True)
class DeepLinearRun:
    """What :func:`train_deep_linear` recorded.

    Attributes:
        norms: (steps + 1, d) encoder norm ``|W e_i|`` of each input feature after each step.
        losses: (steps,) the objective at each step.
    """

    norms: torch.Tensor
    losses: torch.Tensor


def balanced_init(
    objective: str, d: int, depth: int, scale: float, seed: int
) -> list[torch.Tensor]:
    """``depth + 1`` square layers (encoder ``W_1..W_L``, then the head ``V``) of norm ``scale``.

    Random orthogonal factors chained so that every layer has singular values ``scale`` and the
    head lines up with the encoder: ``V W_L ... W_1 = scale^(L+1) I`` for MAE (``V`` decodes to
    the input space), ``V = scale I`` in the latent basis for JEPA (``V`` predicts a latent): the
    paper's balanced, aligned small initialisation in a random basis of each hidden layer (gradient
    descent is equivariant to that basis, so the per-feature dynamics are unchanged).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    gen = torch.Generator().manual_seed(seed)
    bases = [torch.linalg.qr(torch.randn(d, d, generator=gen))[0] for _ in range(depth)]
    ins = [torch.eye(d), *bases]
    outs = [*bases, torch.eye(d) if objective == "mae" else bases[-1]]
    return [scale * out @ inn.T for out, inn in zip(outs, ins, strict=True)]


def _product(layers: Sequence[torch.Tensor]) -> torch.Tensor:
    out = layers[0]
    for layer in layers[1:]:
        out = layer @ out
    return out


def train_deep_linear(
    objective: str,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    depth: int = 2,
    steps: int = 400,
    lr: float = 0.5,
    init_scale: float = 0.2,
    ema: float = 0.0,
    seed: int = 0,
) -> DeepLinearRun:
    """Full-batch gradient descent on the JEPA or MAE objective of a deep linear encoder.

    Args:
        objective: ``"jepa"`` (latent prediction with a stop-gradient/EMA target) or ``"mae"``.
        x, y: (n, d) the two views; ``x`` is encoded, ``y`` is the target.
        depth: encoder layers ``L``.
        init_scale: singular value of every layer at initialisation (small: feature learning).
        ema: momentum of the JEPA target encoder; 0 is plain stop-gradient.

    Raises:
        ValueError: on an unknown objective, mismatched views, ``depth < 1`` or ``ema`` outside
            [0, 1).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must both be (n, d), got {tuple(x.shape)}, {tuple(y.shape)}")
    if depth < 1 or not 0.0 <= ema < 1.0:
        raise ValueError(f"need depth >= 1 and 0 <= ema < 1, got depth={depth}, ema={ema}")
    layers = [
        w.requires_grad_() for w in balanced_init(objective, x.shape[1], depth, init_scale, seed)
    ]
    target = [w.detach().clone() for w in layers[:depth]]
    opt = torch.optim.SGD(layers, lr=lr)
    n = len(x)
    norms, losses = [_product(layers[:depth]).detach().norm(dim=0)], []
    for _ in range(steps):
        pred = x @ _product(layers).T
        goal = y @ _product(target).T if objective == "jepa" else y
        loss = 0.5 * (pred - goal).pow(2).sum() / n
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for t, w in zip(target, layers[:depth], strict=True):
                t.mul_(ema).add_(w, alpha=1.0 - ema)
        norms.append(_product(layers[:depth]).detach().norm(dim=0))
        losses.append(loss.detach())
    return DeepLinearRun(norms=torch.stack(norms), losses=torch.stack(losses))


def learning_times(
    norms: torch.Tensor, targets: torch.Tensor, fraction: float = 0.8
) -> torch.Tensor:
    """The paper's critical times: the first step (d,) at which each feature's norm reaches
    ``fraction`` of its fixed point ``targets``, or -1 where it never does.

    Raises:
        ValueError: if a feature starts at or above its threshold (use a smaller ``init_scale``).
    """
    threshold = fraction * targets.to(norms.dtype)
    if (norms[0] >= threshold).any():
        raise ValueError(f"initial norms {norms[0].tolist()} already reach {threshold.tolist()}")
    reached = norms >= threshold
    first = reached.float().argmax(dim=0)
    return torch.where(reached.any(dim=0), first, torch.full_like(first, -1))


def learning_order(norms: torch.Tensor, targets: torch.Tensor, fraction: float = 0.8) -> list[int]:
    """Feature indices in the order they were learned (see :func:`learning_times`).

    Raises:
        ValueError: if some feature never reached its threshold (train longer).
    """
    times = learning_times(norms, targets, fraction)
    if (times < 0).any():
        missing = torch.nonzero(times < 0).flatten().tolist()
        raise ValueError(f"features {missing} never reached {fraction} of their fixed point")
    return sorted(range(len(times)), key=lambda i: (int(times[i]), i))
