"""Magnitude masks over the weights of Linear/Conv layers, and holding them fixed in training.

Iterative magnitude pruning as in Frankle & Carbin 2019 ("The Lottery Ticket Hypothesis") and
its reference implementation open_lth (github.com/facebookresearch/open_lth,
``pruning/sparse_global.py``): each round removes the smallest-magnitude share of the weights
still alive, ``ceil(rate * remaining)`` of them, either per layer with the paper's per-layer
rates (fully connected ``rate``, convolutions ``conv_rate``, the output layer half of ``rate``)
or globally over every prunable layer at once. Biases are never pruned (as in the paper).

A mask is held fixed during training by :class:`SparseStart`, a hook the Ray Train worker
applies to the freshly built model: the masked weights are zeroed, their gradients are
multiplied by the mask (so no optimiser state or weight decay can revive them) and they are
zeroed again before every forward pass. Nothing is added to the model's ``state_dict``, so
checkpoints stay those of the dense architecture, with zeros where the mask is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from components.pruning.imp_config import PruneConfig

Masks = dict[str, torch.Tensor]


def prunable_layers(model: nn.Module) -> dict[str, str]:
    """``{"<module>.weight": kind}`` for every Linear and Conv layer, in registration order;
    kind is ``fc``, ``conv`` or ``output`` (the last such layer: the classifier)."""
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | nn.modules.conv._ConvNd)
    ]
    kinds = {
        f"{name}.weight": "conv"
        if isinstance(model.get_submodule(name), nn.modules.conv._ConvNd)
        else "fc"
        for name in names
    }
    if names:
        kinds[f"{names[-1]}.weight"] = "output"
    return kinds


def dense_masks(model: nn.Module) -> Masks:
    """All-ones masks of every prunable weight (round 0: the dense network)."""
    params = dict(model.named_parameters())
    return {
        name: torch.ones_like(params[name], dtype=torch.float32) for name in prunable_layers(model)
    }


def layer_rates(kinds: dict[str, str], config: PruneConfig) -> dict[str, float]:
    """The per-round rate of each prunable weight under the layer-wise scope."""
    by_kind = {"fc": config.rate, "conv": config.conv_rate, "output": config.layer_output_rate}
    return {name: by_kind[kind] for name, kind in kinds.items()}


def prune_masks(
    masks: Masks, weights: dict[str, torch.Tensor], kinds: dict[str, str], config: PruneConfig
) -> Masks:
    """The next round's masks: drop the smallest-magnitude surviving ``weights``.

    Args:
        masks: this round's masks (1: alive).
        weights: the trained weights of this round (a state dict; only the masked keys are read).
        kinds: :func:`prunable_layers` of the model.
        config: rates and scope.
    """
    if config.scope == "global":
        return _prune_global(masks, weights, config.rate)
    rates = layer_rates(kinds, config)
    return {name: _prune_one(mask, weights[name], rates[name]) for name, mask in masks.items()}


def _prune_one(mask: torch.Tensor, weight: torch.Tensor, rate: float) -> torch.Tensor:
    alive = int(mask.sum().item())
    count = math.ceil(rate * alive)
    scores = torch.where(mask.bool(), weight.detach().abs().float(), torch.inf).flatten()
    new = mask.flatten().clone()
    new[torch.argsort(scores, stable=True)[:count]] = 0.0
    return new.view_as(mask)


def _prune_global(masks: Masks, weights: dict[str, torch.Tensor], rate: float) -> Masks:
    names = list(masks)
    flat = torch.cat([masks[name].flatten() for name in names])
    scores = torch.cat(
        [
            torch.where(masks[n].bool(), weights[n].detach().abs().float(), torch.inf).flatten()
            for n in names
        ]
    )
    count = math.ceil(rate * int(flat.sum().item()))
    flat[torch.argsort(scores, stable=True)[:count]] = 0.0
    sizes = [masks[name].numel() for name in names]
    return {
        name: part.view_as(masks[name])
        for name, part in zip(names, torch.split(flat, sizes), strict=True)
    }


def remaining(masks: Masks) -> float:
    """Share of the prunable weights still alive."""
    alive = sum(mask.sum().item() for mask in masks.values())
    return alive / sum(mask.numel() for mask in masks.values())


def remaining_per_layer(masks: Masks) -> dict[str, float]:
    """Share alive of each prunable weight."""
    return {name: mask.mean().item() for name, mask in masks.items()}


def attach_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the masked weights of ``model`` and keep them zero through training (gradient and
    forward pre-hooks; nothing enters the ``state_dict``)."""
    for name, mask in masks.items():
        module = model.get_submodule(name.removesuffix(".weight"))
        on_device = _DeviceCopies(mask)
        with torch.no_grad():
            module.weight.mul_(on_device(module.weight))
        module.weight.register_hook(lambda grad, m=on_device: grad * m(grad))
        module.register_forward_pre_hook(_rezero(on_device))


class _DeviceCopies:
    """The mask on whichever device and dtype a tensor asks for (copied once per device)."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.copies = {(mask.device, mask.dtype): mask}
        self.mask = mask

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self.copies:
            self.copies[key] = self.mask.to(like.device, like.dtype)
        return self.copies[key]


def _rezero(on_device: _DeviceCopies):
    def hook(module: nn.Module, _inputs) -> None:
        with torch.no_grad():
            module.weight.mul_(on_device(module.weight))

    return hook


@dataclass(frozen=True)
class SparseStart:
    """What one pruning round trains: a start state and fixed masks.

    Called by the Ray Train worker on the model it built (``fresh``: no checkpoint to resume
    from, so the start weights are loaded; a restarted worker keeps its checkpoint's weights and
    only needs the masks again). Plain tensors: Ray pickles it for every worker.

    Attributes:
        masks: prunable weight name -> 0/1 mask.
        weights: the full state dict to start from (initial, rewound or re-initialised).
    """

    masks: Masks
    weights: dict[str, torch.Tensor]

    def __call__(self, model: nn.Module, fresh: bool) -> None:
        if fresh:
            model.load_state_dict(self.weights, strict=True)
        attach_masks(model, self.masks)
