"""Server-side merging of model updates, FedProx's proximal term, and update validation.

- :func:`fedavg`: Federated Averaging (McMahan et al. 2017, "Communication-Efficient Learning of
  Deep Networks from Decentralized Data"): the new global weights are the average of the client
  weights, each weighted by its number of training samples.
- :func:`fedprox_penalty`: FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous
  Networks"): the client adds ``mu / 2 * ||w - w_global||^2`` to its loss, which keeps its local
  solution near the global model under heterogeneous data.
- :func:`validate_update`: the server's check of a client update before it is merged, so one bad
  client (NaN/inf, wrong shape, wrong keys) cannot corrupt the global model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def _check_weights(states: Sequence[Mapping[str, Tensor]], weights: Sequence[float]) -> Tensor:
    if not states or len(states) != len(weights):
        raise ValueError(
            f"fedavg needs one weight per state and at least one state, got {len(states)} "
            f"states and {len(weights)} weights"
        )
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    keys = set(states[0])
    for i, state in enumerate(states[1:], start=1):
        if set(state) != keys:
            diff = sorted(set(state) ^ keys)
            raise ValueError(f"state {i} and state 0 differ in keys {diff}")
    return w / w.sum()


def _weighted_mean(tensors: list[Tensor], w: Tensor) -> Tensor:
    stacked = torch.stack([t.detach().to("cpu", torch.float64) for t in tensors])
    mean = torch.tensordot(w, stacked, dims=1)
    dtype = tensors[0].dtype
    if not (dtype.is_floating_point or dtype.is_complex):
        # Integer / bool buffers (e.g. BatchNorm's num_batches_tracked) are rounded to the nearest
        # value; for a bool this is the weighted majority vote.
        mean = mean.round()
    return mean.to(dtype)


def fedavg(states: Sequence[Mapping[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
    """Sample-count-weighted average of state dicts (McMahan et al. 2017).

    Floating tensors are averaged in float64 and cast back to their dtype. Integer and bool
    buffers (counters such as BatchNorm's ``num_batches_tracked``) are averaged the same way and
    rounded to the nearest integer. Results are on the CPU.

    Args:
        states: client state dicts with the same keys and shapes.
        weights: one non-negative weight per state, usually its number of training samples.

    Raises:
        ValueError: on empty input, a weight count mismatch, bad weights or differing keys.
    """
    w = _check_weights(states, weights)
    return {key: _weighted_mean([s[key] for s in states], w) for key in states[0]}


def fedprox_penalty(
    model: torch.nn.Module, global_state: Mapping[str, Tensor], mu: float
) -> Tensor:
    """FedProx proximal term ``mu / 2 * sum ||w - w_global||^2`` over the trainable parameters.

    Differentiable in the model's parameters (its gradient is ``mu * (w - w_global)``); the global
    weights are treated as constants.

    Raises:
        ValueError: if ``mu`` < 0 or a trainable parameter is missing from ``global_state``.
    """
    if mu < 0:
        raise ValueError(f"mu must be >= 0, got {mu}")
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name not in global_state:
            raise ValueError(f"global_state has no parameter {name!r}")
        anchor = global_state[name].detach().to(param.device, param.dtype)
        total = total + (param - anchor).pow(2).sum()
    return 0.5 * mu * total


def _check_tensor(key: str, value: object, expected: Tensor) -> str | None:
    if not isinstance(value, Tensor):
        return f"{key!r} is a {type(value).__name__}, not a tensor"
    if value.shape != expected.shape:
        return f"{key!r} has shape {tuple(value.shape)}, expected {tuple(expected.shape)}"
    if value.is_floating_point() or value.is_complex():
        bad = (~torch.isfinite(value)).sum().item()
        if bad:
            nan = torch.isnan(value).sum().item()
            return f"{key!r} has {bad} non-finite values ({nan} NaN, {bad - nan} inf)"
    return None


def validate_update(update: Mapping[str, object], reference: Mapping[str, Tensor]) -> str | None:
    """Why a client update must be rejected, or None if it fits ``reference`` and is finite.

    Checks, in order: missing keys, extra keys, then for each key that the value is a tensor of the
    reference's shape with only finite values. The reason names the keys and shapes involved.
    """
    missing = sorted(set(reference) - set(update))
    if missing:
        return f"update lacks keys {missing}"
    extra = sorted(set(update) - set(reference))
    if extra:
        return f"update has unexpected keys {extra}"
    for key, expected in reference.items():
        reason = _check_tensor(key, update[key], expected)
        if reason:
            return reason
    return None
