"""Stability of explanations: does the explanation stay put when the input barely moves?

* :func:`sensitivity_max`: max-sensitivity (Yeh et al. 2019, "On the (in)fidelity and sensitivity
  of explanations"), via captum.
* :func:`ris`, :func:`ros`, :func:`rrs`: relative input / output / representation stability
  (Agarwal et al. 2022, "Rethinking stability for attribution-based explanations"; OpenXAI).

Both re-explain perturbed inputs, so they take an explainer ``explain_fn(x) -> attributions``
(shaped like ``x``; array or tensor). With ``target`` given it is called as
``explain_fn(x, target=t)`` with one class per row of the batch it receives. It runs with
gradients enabled, even inside captum's ``no_grad``. All functions return one value per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import nn

from components.evaluation.faithfulness import Target, as_attributions, model_scores
from components.tensors import as_float_tensor

ExplainFn = Callable[..., Any]
KINDS = ("input", "output", "representation")


def explain(explain_fn: ExplainFn, x: torch.Tensor, target: Any = None) -> torch.Tensor:
    """``explain_fn``'s attributions for ``x`` as a detached float tensor shaped like ``x``."""
    with torch.enable_grad():
        # a fresh leaf, so an explainer that sets requires_grad cannot touch the caller's tensor
        x = x.detach()
        attr = explain_fn(x) if target is None else explain_fn(x, target=target)
    return as_attributions(attr, x, "explain_fn output")


def uniform_perturbation(radius: float, generator: torch.Generator) -> Callable:
    """captum ``perturb_func``: ``x + U(-radius, radius)`` per feature (the l_inf ball)."""

    def perturb(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        noise = torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype)
        return inputs + (2 * noise - 1).to(inputs.device) * radius

    return perturb


def _target_tensor(target: Target, n: int) -> torch.Tensor | None:
    if target is None:
        return None
    targets = torch.as_tensor(np.asarray(target)).long().reshape(-1)
    return targets.expand(n) if targets.numel() == 1 else targets


def sensitivity_max(
    explain_fn: ExplainFn,
    x: Any,
    *,
    radius: float = 0.02,
    n_perturb_samples: int = 10,
    norm_ord: str = "fro",
    target: Target = None,
    seed: int = 0,
    max_examples_per_batch: int | None = None,
) -> np.ndarray:
    """Max-sensitivity (Yeh et al. 2019) through captum's ``sensitivity_max``. Lower is better.

    ``SENS_max(x) = max_{|x' - x|_inf <= radius} |e(x') - e(x)| / |e(x)|`` over
    ``n_perturb_samples`` uniform draws (captum divides by ``|e(x)|`` unless it is 0). The draws
    come from a seeded generator, not torch's global one.

    Returns:
        ``(N,)`` sensitivities.
    """
    x = as_float_tensor(x)
    generator = torch.Generator().manual_seed(seed)

    def explanation_func(inputs: Any, **kwargs: Any) -> tuple[torch.Tensor]:
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        # captum iterates over the result as a tuple of per-input explanations
        return (explain(explain_fn, inputs, kwargs.get("target")),)

    targets = _target_tensor(target, len(x))
    values = captum_sensitivity_max(
        explanation_func,
        x,
        perturb_func=uniform_perturbation(radius, generator),
        perturb_radius=radius,
        n_perturb_samples=n_perturb_samples,
        norm_ord=norm_ord,
        max_examples_per_batch=max_examples_per_batch,
        **({} if targets is None else {"target": targets}),
    )
    return values.detach().cpu().double().numpy()


def relative_change(
    before: torch.Tensor,
    after: torch.Tensor,
    *,
    p: float = 2,
    eps: float = 1e-6,
    elementwise: bool = False,
) -> torch.Tensor:
    """Per-sample relative change from ``before`` to ``after``, with an ``eps`` floor.

    ``|after - before|_p / max(|before|_p, eps)`` (OpenXAI's code), or with ``elementwise``
    ``|(after - before) / max(|before|, eps)|_p`` (the equations of Agarwal et al. 2022).
    """
    before = before.reshape(len(before), -1).double()
    diff = after.reshape(len(after), -1).double() - before
    if elementwise:
        return torch.linalg.vector_norm(diff / before.abs().clamp_min(eps), ord=p, dim=1)
    norm = torch.linalg.vector_norm(before, ord=p, dim=1).clamp_min(eps)
    return torch.linalg.vector_norm(diff, ord=p, dim=1) / norm


def _reference(kind: str, model: nn.Module, representation_fn: Callable | None) -> Callable:
    """What the explanation change is divided by: the input, the logits or a representation."""
    if kind == "input":
        return lambda x: x
    if kind == "output":
        return lambda x: model_scores(model, x, "logit")
    if kind == "representation":
        if representation_fn is None:
            raise ValueError("kind='representation' (RRS) needs a representation_fn")

        def represent(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.as_tensor(representation_fn(x)).detach().cpu()

        return represent
    raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def relative_stability(
    model: nn.Module,
    x: Any,
    explain_fn: ExplainFn,
    *,
    kind: str = "input",
    representation_fn: Callable[[torch.Tensor], Any] | None = None,
    radius: float = 0.05,
    num_perturbations: int = 20,
    p: float = 2,
    eps: float = 1e-6,
    elementwise: bool = False,
    same_prediction: bool = True,
    target: Target = None,
    seed: int = 0,
) -> np.ndarray:
    """Relative stability RIS / ROS / RRS (Agarwal et al. 2022). Lower is better.

    ``max_{x'} rel(e_x, e_x') / max(rel(r_x, r_x'), eps)``, with ``rel`` from
    :func:`relative_change` and ``r`` the input (RIS), the logits (ROS) or
    ``representation_fn(x)`` (RRS). ``x'`` are ``num_perturbations`` uniform draws in the l_inf
    ball of ``radius`` around ``x`` (standardised units); with ``same_prediction`` (the paper's
    constraint) only draws that keep the predicted class count. The ``eps`` floor on every
    divisor keeps the ratio finite when the input, output or explanation barely changes.

    Returns:
        ``(N,)`` stability ratios; ``nan`` where no perturbation kept the prediction.
    """
    x = as_float_tensor(x)
    reference = _reference(kind, model, representation_fn)
    targets = _target_tensor(target, len(x))
    predicted = model_scores(model, x, "logit").argmax(dim=1)
    expl, ref = explain(explain_fn, x, targets), reference(x)
    perturb = uniform_perturbation(radius, torch.Generator().manual_seed(seed))
    change = {"p": p, "eps": eps, "elementwise": elementwise}
    best = torch.full((len(x),), -torch.inf, dtype=torch.float64)
    for _ in range(num_perturbations):
        moved = perturb(x)
        valid = torch.ones(len(x), dtype=torch.bool)
        if same_prediction:
            valid = model_scores(model, moved, "logit").argmax(dim=1) == predicted
        numerator = relative_change(expl, explain(explain_fn, moved, targets), **change)
        denominator = relative_change(ref, reference(moved), **change).clamp_min(eps)
        best = torch.where(valid, torch.maximum(best, numerator / denominator), best)
    best[torch.isinf(best)] = torch.nan
    return best.numpy()


def ris(model: nn.Module, x: Any, explain_fn: ExplainFn, **kwargs: Any) -> np.ndarray:
    """Relative Input Stability: :func:`relative_stability` against the input change."""
    return relative_stability(model, x, explain_fn, kind="input", **kwargs)


def ros(model: nn.Module, x: Any, explain_fn: ExplainFn, **kwargs: Any) -> np.ndarray:
    """Relative Output Stability: :func:`relative_stability` against the change of the logits."""
    return relative_stability(model, x, explain_fn, kind="output", **kwargs)


def rrs(
    model: nn.Module,
    x: Any,
    explain_fn: ExplainFn,
    representation_fn: Callable[[torch.Tensor], Any],
    **kwargs: Any,
) -> np.ndarray:
    """Relative Representation Stability: against the change of ``representation_fn(x)``.

    ``representation_fn`` returns an internal representation ``(N, ...)``, e.g. a prototype
    model's similarities or an encoder's embedding.
    """
    return relative_stability(
        model, x, explain_fn, kind="representation", representation_fn=representation_fn, **kwargs
    )
