"""Adversarial robustness: certified accuracy, a PGD l2 attack, and a check of certificates.

All norms are l2 norms in the model's input space (for sennflow's datasets: the standardised
feature space, where every feature has unit variance on the training split).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from components.evaluation.arrays import as_labels, as_numpy
from components.evaluation.predict import eval_mode, model_logits
from components.tensors import as_float_tensor


def certified_accuracy(pred: Any, y: Any, radius: Any, eps: float) -> float:
    """Share of samples predicted correctly *and* certified at radius ``eps``.

    Args:
        pred: ``(N,)`` predicted labels.
        y: ``(N,)`` true labels.
        radius: ``(N,)`` certified l2 radius of every prediction.
        eps: the perturbation budget.

    Returns:
        ``mean((pred == y) & (radius >= eps))``; ``nan`` for an empty input.
    """
    pred, labels = as_labels(pred, "pred"), as_labels(y, "y")
    radius = as_numpy(radius, "radius").astype(np.float64).ravel()
    if not len(pred) == len(labels) == len(radius):
        raise ValueError(f"pred, y and radius have {len(pred)}, {len(labels)}, {len(radius)} rows")
    if not len(labels):
        return float("nan")
    return float(np.mean((pred == labels) & (radius >= eps)))


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{j != y} logit_j - logit_y`` per sample: > 0 exactly when the prediction left ``y``."""
    own = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    others = logits.masked_fill(nn.functional.one_hot(y, logits.shape[1]).bool(), -torch.inf)
    return others.amax(dim=1) - own


def project_l2(delta: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
    """Scale every row of ``delta`` back into its l2 ball of radius ``eps`` (one per row, or
    one for all)."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (eps / norms).clamp(max=1.0)
    return delta * factor.view(-1, *[1] * (delta.dim() - 1))


def pgd_l2(
    model: nn.Module,
    x: Any,
    y: Any,
    eps: float | Any,
    *,
    steps: int = 50,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Projected gradient ascent on the margin loss inside the l2 ball (Madry et al., 2018).

    Every step moves along the l2-normalised gradient of ``max_{j != y} logit_j - logit_y``
    and projects back onto the ball; the returned point is, per sample, the iterate with the
    highest margin (so a prediction that left ``y`` at any step stays flipped).

    Args:
        model: forward returns logits or an object with ``.logits``; run in eval mode.
        x: ``(N, *input_shape)`` inputs.
        y: ``(N,)`` the labels to move away from (true labels, or predictions).
        eps: l2 budget, a float or an ``(N,)`` vector of per-sample budgets.
        steps: gradient steps.
        step_size: l2 length of a step; default ``2.5 * eps / steps``.
        random_start: start from a random direction at a uniform random length in ``[0, eps]``.
        seed: seed of the random start.

    Returns:
        ``x_adv`` with ``||x_adv - x||_2 <= eps`` per sample, same shape as ``x``.
    """
    inputs = as_float_tensor(x).detach()
    labels = torch.as_tensor(as_labels(y, "y"), device=inputs.device)
    budget = torch.as_tensor(eps, dtype=inputs.dtype, device=inputs.device).expand(len(inputs))
    step = 2.5 * budget / steps if step_size is None else torch.full_like(budget, step_size)
    shape = (-1, *[1] * (inputs.dim() - 1))
    delta = torch.zeros_like(inputs)
    if random_start:
        generator = torch.Generator(inputs.device).manual_seed(seed)
        noise = torch.randn(inputs.shape, generator=generator, device=inputs.device)
        length = budget * torch.rand(len(inputs), generator=generator, device=inputs.device)
        delta = noise / noise.flatten(1).norm(dim=1).view(shape) * length.view(shape)
    best, best_margin = inputs + delta, torch.full_like(budget, -torch.inf)
    with eval_mode(model):
        for _ in range(steps + 1):
            delta.requires_grad_(True)
            margin = _margin(model_logits(model(inputs + delta)), labels)
            grad = torch.autograd.grad(margin.sum(), delta)[0]
            with torch.no_grad():
                improved = margin > best_margin
                best = torch.where(improved.view(shape), inputs + delta, best)
                best_margin = torch.where(improved, margin, best_margin)
                norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
                delta = project_l2(delta + step.view(shape) * grad / norms, budget)
    return best.detach()


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model):
        return model_logits(model(x)).argmax(dim=1)


def check_certificates(
    model: nn.Module,
    x: Any,
    y: Any,
    *,
    fraction: float = 0.99,
    beyond: float = 2.0,
    steps: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """Attack every certified prediction inside its certified radius; none may flip.

    Each prediction with a positive radius ``r`` (from ``model.certified_radius``) is attacked
    by :func:`pgd_l2` at ``fraction * r`` (below the radius: a flip disproves the certificate)
    and, as a control that the attack has teeth, at ``beyond * r``.

    Args:
        model: a model with ``certified_radius(x) -> (N,)``.
        x: ``(N, *input_shape)`` inputs.
        y: ``(N,)`` true labels, only to count ``correct``; the attacks move away from the
            *prediction*, which is what a certificate is about.
        fraction: attack budget as a share of the radius (must be < 1).
        beyond: budget multiple of the radius for the control attack (> 1).
        steps: PGD steps per attack.
        seed: seed of the attacks' random starts.

    Returns:
        ``checked`` (certified predictions attacked), ``flipped`` (of those, changed by an
        attack below their radius: must be 0), ``flipped_beyond`` (changed at ``beyond * r``),
        ``correct`` (certified predictions that are also right) and ``mean_radius``.
    """
    if not 0 < fraction < 1 < beyond:
        raise ValueError(f"need 0 < fraction < 1 < beyond, got {fraction} and {beyond}")
    inputs = as_float_tensor(x)
    labels = torch.as_tensor(as_labels(y, "y"), device=inputs.device)
    with eval_mode(model):
        radius = model.certified_radius(inputs).detach()
    pred = _predict(model, inputs)
    certified = radius > 0
    xs, preds, radii = inputs[certified], pred[certified], radius[certified]
    flipped = flipped_beyond = 0
    if len(xs):
        below = pgd_l2(model, xs, preds, fraction * radii, steps=steps, seed=seed)
        above = pgd_l2(model, xs, preds, beyond * radii, steps=steps, seed=seed)
        flipped = int((_predict(model, below) != preds).sum())
        flipped_beyond = int((_predict(model, above) != preds).sum())
    return {
        "checked": int(certified.sum()),
        "flipped": flipped,
        "flipped_beyond": flipped_beyond,
        "correct": int((certified & (pred == labels)).sum()),
        "mean_radius": float(radii.mean()) if len(radii) else float("nan"),
    }
