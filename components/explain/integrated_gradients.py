"""Integrated Gradients of any model via captum, and the target and baseline resolution every
gradient- or removal-based explanation shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import nn

from components.evaluation.predict import eval_mode, model_logits, predict_logits
from components.tensors import as_float_tensor


def _as_tensor(value: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor of ``value`` (tensor, array, sequence or scalar) on ``device``."""
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(np.asarray(value))
    return value.to(device=device, dtype=dtype)


def resolve_targets(model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
    """One target class per sample; the predicted class when ``target`` is None."""
    device = x.device
    if target is None:
        return predict_logits(model, x, device=device).argmax(dim=1).to(device)
    targets = _as_tensor(target, torch.long, device)
    if targets.ndim == 0:
        targets = targets.expand(len(x))
    if targets.shape != (len(x),):
        raise ValueError(f"target: expected an int or {len(x)} class indices, got {targets.shape}")
    return targets


def resolve_baseline(x: torch.Tensor, baseline: Any | None) -> torch.Tensor:
    """Broadcast ``baseline`` (None, a scalar, one sample or one per sample) to ``x``'s shape."""
    if baseline is None:
        # Inputs are standardised, so zero is the training mean: the "absence of signal" reference.
        return torch.zeros_like(x)
    base = _as_tensor(baseline, x.dtype, x.device)
    if base.shape not in {(), x.shape[1:], (1, *x.shape[1:]), x.shape}:
        raise ValueError(
            f"baseline: shape {tuple(base.shape)} does not broadcast to inputs {tuple(x.shape)}; "
            "give a scalar, one sample or one baseline per sample"
        )
    return base.expand_as(x).contiguous()


def integrated_gradients(
    model: nn.Module,
    x: Any,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    baseline: Any | None = None,
    n_steps: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrated Gradients of each sample's target logit.

    Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks":
    ``attr_i = (x_i - b_i) * integral_0^1 dF(b + a(x - b))/dx_i da``, with the integral
    approximated by Gauss-Legendre quadrature. By completeness, ``sum(attr) = F(x) - F(b)`` up to
    the quadrature error, which is returned as the convergence delta.

    Args:
        model: a module whose forward returns logits or an object with ``.logits``. Its
            train/eval mode is restored afterwards; attributions are computed in eval mode.
        x: inputs ``(N, *input_shape)``, numpy array or tensor, on the model's device.
        target: class whose logit is explained, one int for all samples or one per sample;
            defaults to each sample's predicted class.
        baseline: reference input; defaults to zeros (the training mean of standardised inputs).
        n_steps: quadrature points along the straight path from baseline to input.

    Returns:
        ``(attributions, delta)``: attributions with ``x``'s shape, and per sample
        ``delta = sum(attributions) - (F(x) - F(baseline))``.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    inputs = as_float_tensor(x)
    targets = resolve_targets(model, inputs, target)
    baselines = resolve_baseline(inputs, baseline)
    with eval_mode(model):
        explainer = IntegratedGradients(lambda batch: model_logits(model(batch)))
        attributions, delta = explainer.attribute(
            inputs,
            baselines=baselines,
            target=targets,
            n_steps=n_steps,
            return_convergence_delta=True,
        )
    return attributions.detach().cpu().numpy(), delta.detach().cpu().numpy()
