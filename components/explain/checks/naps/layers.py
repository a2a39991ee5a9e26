"""Which ReLU layers a model has, and the on/off state of one layer's neurons on given inputs
(the raw material of neural activation patterns, :mod:`components.explain.checks.naps`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from components.evaluation.predict import eval_mode, model_logits
from components.tensors import as_float_tensor


def relu_layers(model: nn.Module) -> list[str]:
    """Names (as in ``named_modules``) of the model's ``nn.ReLU`` modules, in module order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]


def layer_activity(
    model: nn.Module, layers: Sequence[str], x: Any, *, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Which neurons of the ReLU modules ``layers`` are active (output > 0) on each row of
    ``x``, and the model's predicted class of each row; eval mode, no gradients.

    Args:
        model: forward returns logits or an object with ``.logits``.
        layers: names from :func:`relu_layers`; their neurons are concatenated in this order.
        x: inputs ``(N, *input_shape)``.
        batch_size: rows per forward pass.

    Returns:
        ``(N, K)`` bool activity (a conv layer's ``(C, H, W)`` outputs flattened) and ``(N,)``
        int64 predictions.

    Raises:
        ValueError: a name is not a module of ``model``, or a forward pass calls one other than
            exactly once (a shared ReLU module has no single pattern per input).
    """
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"model has no module named {missing[0]!r}")
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, seen=outputs[name]: seen.append(out.flatten(1) > 0)
        )
        for name in layers
    ]
    activity, predicted = [], []
    try:
        with eval_mode(model), torch.no_grad():
            for batch in as_float_tensor(x).split(batch_size):
                for seen in outputs.values():
                    seen.clear()
                predicted.append(model_logits(model(batch)).argmax(dim=1))
                activity.append(torch.cat([_single(name, outputs[name]) for name in layers], 1))
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(activity).numpy(), torch.cat(predicted).numpy().astype(np.int64)


def _single(name: str, seen: list[torch.Tensor]) -> torch.Tensor:
    if len(seen) != 1:
        raise ValueError(
            f"module {name!r} ran {len(seen)} times in one forward pass (expected once)"
        )
    return seen[0]
