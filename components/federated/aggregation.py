"""Server-side merging of model updates, FedProx's proximal term, and update validation.

- :func:`fedavg`: Federated Averaging (McMahan et al. 2017, "Communication-Efficient Learning of
  Deep Networks from Decentralized Data"): the new global weights are the average of the client
  weights, each weighted by its number of training samples.
- :func:`coordinate_median` and :func:`trimmed_mean`: the coordinate-wise median and
  coordinate-wise trimmed mean of Yin et al. 2018 ("Byzantine-Robust Distributed Learning: Towards
  Optimal Statistical Rates", ICML 2018). Every coordinate is merged on its own, from the values
  the clients sent for it: the median, or the mean after dropping the ``f`` largest and ``f``
  smallest values (Yin et al.'s trimming fraction is ``beta = f / n``).
- :func:`krum`: Krum (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine
  Tolerant Gradient Descent", NeurIPS 2017): the update whose ``n - f - 2`` nearest neighbours
  (squared Euclidean distance over all floating tensors) are closest; that one update becomes the
  global state.
- :func:`aggregate`: one of the above by name (``mean`` is :func:`fedavg`).
- :func:`fedprox_penalty`: FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous
  Networks"): the client adds ``mu / 2 * ||w - w_global||^2`` to its loss, which keeps its local
  solution near the global model under heterogeneous data.
- :func:`validate_update`: the server's check of a client update before it is merged, so one bad
  client (NaN/inf, wrong shape, wrong keys) cannot corrupt the global model;
  :func:`check_sample_claim` bounds the number of samples an update claims.

Why robust merging: validation only catches updates that are malformed. A finite but malicious
update (weights scaled by a large factor, or an inflated sample count that buys it most of the
weight) passes it, and a single such client moves the sample-weighted mean anywhere it likes. The
median, trimmed mean and Krum tolerate ``f`` such clients among ``n`` (``n > 2f`` for the first
two, ``n > 2f + 2`` for Krum). They are unweighted on purpose: weighting by claimed sample counts
would hand the attacker back the lever they remove.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

AGGREGATIONS = ("mean", "median", "trimmed_mean", "krum")


def _check_states(states: Sequence[Mapping[str, Tensor]]) -> None:
    if not states:
        raise ValueError("aggregation needs at least one state, got none")
    keys = set(states[0])
    for i, state in enumerate(states[1:], start=1):
        if set(state) != keys:
            diff = sorted(set(state) ^ keys)
            raise ValueError(f"state {i} and state 0 differ in keys {diff}")


def _check_weights(states: Sequence[Mapping[str, Tensor]], weights: Sequence[float]) -> Tensor:
    if not states or len(states) != len(weights):
        raise ValueError(
            f"fedavg needs one weight per state and at least one state, got {len(states)} "
            f"states and {len(weights)} weights"
        )
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    _check_states(states)
    return w / w.sum()


def _stack(tensors: list[Tensor]) -> Tensor:
    return torch.stack([t.detach().to("cpu", torch.float64) for t in tensors])


def _cast_back(merged: Tensor, dtype: torch.dtype) -> Tensor:
    if not (dtype.is_floating_point or dtype.is_complex):
        # Integer / bool buffers (e.g. BatchNorm's num_batches_tracked) are rounded to the nearest
        # value; for a bool this is the (weighted) majority vote.
        merged = merged.round()
    return merged.to(dtype)


def _weighted_mean(tensors: list[Tensor], w: Tensor) -> Tensor:
    return _cast_back(torch.tensordot(w, _stack(tensors), dims=1), tensors[0].dtype)


def _middle_mean(tensors: list[Tensor], trim: int) -> Tensor:
    """Per coordinate: the mean of the values left after dropping ``trim`` from each end."""
    ordered = _stack(tensors).sort(dim=0).values
    return _cast_back(ordered[trim : len(tensors) - trim].mean(dim=0), tensors[0].dtype)


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


def coordinate_median(states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Coordinate-wise median of state dicts (Yin et al. 2018), unweighted.

    With an even number of states a coordinate's median is the mean of its two middle values.
    Dtypes are kept as in :func:`fedavg` (integer buffers rounded); results are on the CPU.

    Raises:
        ValueError: on empty input or differing keys.
    """
    _check_states(states)
    middle = (len(states) - 1) // 2
    return {key: _middle_mean([s[key] for s in states], middle) for key in states[0]}


def trimmed_mean(states: Sequence[Mapping[str, Tensor]], byzantine: int) -> dict[str, Tensor]:
    """Coordinate-wise trimmed mean of state dicts (Yin et al. 2018), unweighted.

    Per coordinate, the ``byzantine`` largest and ``byzantine`` smallest values are dropped and
    the rest averaged. With too few states to drop that many (``n <= 2 * byzantine``) it trims
    as far as it can, which is the coordinate-wise median.

    Raises:
        ValueError: on empty input, differing keys or ``byzantine < 0``.
    """
    if byzantine < 0:
        raise ValueError(f"byzantine must be >= 0, got {byzantine}")
    _check_states(states)
    trim = min(byzantine, (len(states) - 1) // 2)
    return {key: _middle_mean([s[key] for s in states], trim) for key in states[0]}


def krum_scores(states: Sequence[Mapping[str, Tensor]], byzantine: int) -> Tensor:
    """Krum's score of each state (Blanchard et al. 2017): the sum of its squared Euclidean
    distances to its ``n - byzantine - 2`` nearest other states (at least 1), over the
    floating tensors. One state scores 0."""
    if byzantine < 0:
        raise ValueError(f"byzantine must be >= 0, got {byzantine}")
    _check_states(states)
    keys = [k for k, v in states[0].items() if v.is_floating_point()]
    flat = torch.stack(
        [
            torch.cat([s[k].detach().to("cpu", torch.float64).flatten() for k in keys])
            for s in states
        ]
    )
    n = len(states)
    if n == 1:
        return torch.zeros(1, dtype=torch.float64)
    distances = torch.cdist(flat, flat).pow(2)
    distances.fill_diagonal_(math.inf)
    neighbours = max(n - byzantine - 2, 1)
    return distances.sort(dim=1).values[:, :neighbours].sum(dim=1)


def krum(states: Sequence[Mapping[str, Tensor]], byzantine: int) -> dict[str, Tensor]:
    """Krum (Blanchard et al. 2017): a copy (on the CPU) of the state with the lowest
    :func:`krum_scores`; ties go to the first.

    Raises:
        ValueError: on empty input, differing keys or ``byzantine < 0``.
    """
    chosen = int(krum_scores(states, byzantine).argmin())
    return {k: v.detach().cpu().clone() for k, v in states[chosen].items()}


def aggregate(
    states: Sequence[Mapping[str, Tensor]],
    weights: Sequence[float],
    method: str = "mean",
    byzantine: int = 1,
) -> dict[str, Tensor]:
    """Merge client state dicts with ``method`` (one of :data:`AGGREGATIONS`).

    Args:
        states: client state dicts with the same keys and shapes.
        weights: one sample count per state; only ``"mean"`` (:func:`fedavg`) uses them.
        method: ``"mean"``, ``"median"``, ``"trimmed_mean"`` or ``"krum"``.
        byzantine: ``f``, the attacking clients tolerated (trimmed mean and Krum).

    Raises:
        ValueError: on an unknown method or bad input.
    """
    if method == "mean":
        return fedavg(states, weights)
    if method == "median":
        return coordinate_median(states)
    if method == "trimmed_mean":
        return trimmed_mean(states, byzantine)
    if method == "krum":
        return krum(states, byzantine)
    raise ValueError(f"unknown aggregation {method!r}; choose from {list(AGGREGATIONS)}")


def check_sample_claim(claimed: int, bound: int | None) -> str | None:
    """Why a claimed sample count must be rejected (not > 0, or above ``bound``), else None."""
    if claimed <= 0:
        return f"claims {claimed} samples, expected > 0"
    if bound is not None and claimed > bound:
        return f"claims {claimed} samples, more than the {bound} this client holds"
    return None


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
