"""Fire Together Wire Together: dynamic channel gating with self-supervised mask predictors.

Elkerdawy et al., "Fire Together Wire Together: A Dynamic Pruning Approach with Self-Supervised
Mask Prediction" (CVPR 2022); reference code github.com/selkerdawy/FTWT (``utils/layers.py``,
``utils/utils.py``, ``cifar.py``), read for this module.

Each gated conv layer ``l`` (a convolution followed by a ReLU inside a ``nn.Sequential`` of the
model's ``features`` trunk: ``model=cnn``, the ``conv`` and VGG trunks of the part-prototype
models) gets a mask predictor: the layer's input (the previous layer's gated activation) is
average-pooled to one value per channel and mapped by a linear layer (the reference's
``1Conv2dMask`` 1x1 conv) to one logit per output filter. Its target is the
per-input top-k of the layer's own output: each filter's heatmap is scored by its spatial max of
``|activation|`` (``get_fmap_criteria``), the scores are normalised to sum to 1 and ``k`` is the
smallest number of filters whose scores reach ``mass`` (the heatmap-mass criterion). The
predictor is a binary classifier of "in the top-k" trained with BCE; its input is detached, so
the task loss and the predictor loss never share a gradient (the paper's *decoupled* mode). At
inference the binarised prediction (sigmoid > 0.5) multiplies the layer's output channels.

FLOPs are counted as multiply-accumulates of the gated conv layers: a layer with ``k_out`` kept
filters reading ``k_in`` kept channels over an output grid of ``S`` positions with a kernel of
``K`` weights costs ``k_out * k_in * K * S`` (the reference's ``ConvWithMask`` count, with
``k_in`` the image channels for the first layer). *Measured* FLOPs use the predicted masks of each
input, plus the predictors' own ``in * out`` MACs; *predicted* FLOPs, known before the predictors
are trained, gate the trained network with its own ground-truth top-k masks at the chosen
``mass`` (the paper's estimate of the reduction a threshold buys).

Departures: ``k`` is the smallest count whose mass reaches ``mass`` (the paper's wording); the
reference code keeps the filters whose cumulative mass stays within ``mass``, one filter fewer
whenever ``mass`` is not hit exactly. An input whose layer output is all zero keeps no filter.
No softmax over the pooled channels (the reference's ``--softmax 0``; its default is 1): on
digits the softmax of small pooled ReLU activations is nearly uniform, and the predictors then
learned only a fixed mask (second-layer mask accuracy 0.807 against 0.816 for the best fixed
mask; 0.782 against 0.751 without it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

GATE_MODES = ("off", "predicted", "ground_truth")


def heatmap_scores(activation: torch.Tensor) -> torch.Tensor:
    """Each filter's heatmap score: the spatial max of ``|activation|``, shape ``(N, C)``."""
    return activation.detach().abs().flatten(2).amax(dim=2)


def mass_topk_mask(activation: torch.Tensor, mass: float) -> torch.Tensor:
    """The per-input top-k filter mask of the heatmap-mass criterion, ``(N, C)`` of 0/1.

    ``k`` is the smallest number of filters whose normalised heatmap scores sum to at least
    ``mass``; the kept filters are the ``k`` highest-scoring ones. An all-zero input keeps none.
    """
    scores = heatmap_scores(activation)
    total = scores.sum(dim=1, keepdim=True)
    share = scores / total.clamp_min(torch.finfo(scores.dtype).tiny)
    ordered, order = share.sort(dim=1, descending=True)
    before = ordered.cumsum(dim=1) - ordered  # mass of the better filters alone
    # a filter is kept while the better ones have not yet reached the mass (1e-6: float slack)
    keep_sorted = (before < mass - 1e-6) & (ordered > 0)
    mask = torch.zeros_like(share).scatter(1, order, keep_sorted.to(share.dtype))
    return mask * (total > 0)


class MaskPredictor(nn.Module):
    """Predicts a layer's top-k filters from its input: average pooling, then a linear layer.

    Args:
        in_channels: channels of the layer's input.
        out_channels: filters of the layer.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels)

    def forward(self, layer_input: torch.Tensor) -> torch.Tensor:
        pooled = layer_input.detach().flatten(2).mean(dim=2)
        return self.linear(pooled)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one prediction."""
        return self.linear.in_features * self.linear.out_features


@dataclass(frozen=True)
class GatedLayer:
    """One conv layer FTWT gates: the conv and the ReLU whose output is masked."""

    name: str
    conv: nn.Module
    activation: nn.Module

    @property
    def kernel_size(self) -> int:
        """Weights per output position per input channel (``kh * kw``)."""
        return int(torch.tensor(self.conv.kernel_size).prod())


def gated_layers(model: nn.Module) -> list[GatedLayer]:
    """The ``conv -> ReLU`` pairs of ``model.features``, in forward order.

    Raises:
        ValueError: the model has no ``features`` trunk or no such pair in it.
    """
    features = getattr(model, "features", None)
    layers = []
    for prefix, module in features.named_modules() if features is not None else ():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (name, conv), (_, act) in zip(children, children[1:], strict=False):
            if isinstance(conv, nn.Conv1d | nn.Conv2d) and isinstance(act, nn.ReLU):
                layers.append(GatedLayer(f"features.{prefix}.{name}".replace("..", "."), conv, act))
    if not layers:
        raise ValueError(
            f"dynamic pruning (FTWT) needs a model with a conv trunk of conv -> ReLU layers in "
            f"model.features; {type(model).__name__} has none: use model=cnn, or protopnet / "
            "st_protopnet with backbone=conv or a VGG trunk"
        )
    return layers


@dataclass
class GateRecord:
    """What one forward pass saw at each gated layer (filled by the hooks)."""

    logits: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    grids: list[int] = field(default_factory=list)


class FtwtGates(nn.Module):
    """The mask predictors of a model's gated layers, attached to it by forward hooks.

    The model's own forward is unchanged; while attached, each gated layer's output is
    multiplied by a mask chosen by :attr:`mode`: ``off`` (no gating), ``predicted`` (the
    predictors' binarised output) or ``ground_truth`` (the top-k mask itself). Every forward
    pass leaves a :class:`GateRecord` in :attr:`record`.

    Args:
        model: the trained model (with a ``features`` conv trunk).
        mass: heatmap mass the top-k keeps, in ``(0, 1]``.
    """

    def __init__(self, model: nn.Module, mass: float) -> None:
        super().__init__()
        if not 0 < mass <= 1:
            raise ValueError(f"FTWT mass must be in (0, 1], got {mass}")
        self.layers = gated_layers(model)
        self.mass = mass
        self.input_channels = self.layers[0].conv.in_channels
        self.predictors = nn.ModuleList(
            MaskPredictor(layer.conv.in_channels, layer.conv.out_channels) for layer in self.layers
        )
        self.mode = "predicted"
        self.record = GateRecord()
        self._inputs: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles: list = []
        self.to(next(model.parameters()).device)

    def attach(self) -> FtwtGates:
        """Register the hooks on the model's layers (idempotent)."""
        if not self._handles:
            for index, layer in enumerate(self.layers):
                self._handles.append(layer.conv.register_forward_pre_hook(self._saver(index)))
                self._handles.append(layer.activation.register_forward_hook(self._gate(index)))
        return self

    def detach_hooks(self) -> None:
        """Remove the hooks: the model runs ungated again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _saver(self, index: int):
        def hook(module, args):
            if index == 0:
                self.record = GateRecord()
            self._inputs[index] = args[0]

        return hook

    def _gate(self, index: int):
        def hook(module, args, output):
            logits = self.predictors[index](self._inputs[index])
            target = mass_topk_mask(output, self.mass)
            if self.mode == "predicted":
                mask = (logits.detach() > 0).to(output.dtype)  # sigmoid(logit) > 0.5
            elif self.mode == "ground_truth":
                mask = target
            else:
                mask = torch.ones_like(target)
            self.record.logits.append(logits)
            self.record.targets.append(target)
            self.record.masks.append(mask)
            self.record.grids.append(output[0, 0].numel())
            shape = (*mask.shape, *([1] * (output.dim() - 2)))
            return output * mask.view(shape)

        return hook

    def mask_loss(self) -> torch.Tensor:
        """The reference's mask loss of the last forward: per layer, BCE summed over filters and
        averaged over inputs; averaged over layers."""
        terms = [
            F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(0).sum()
            for logits, target in zip(self.record.logits, self.record.targets, strict=True)
        ]
        return torch.stack(terms).mean()

    def macs_per_input(self, record: GateRecord | None = None) -> torch.Tensor:
        """Gated conv MACs of each input of a forward pass, ``(N,)`` (predictors excluded)."""
        record = record or self.record
        batch = record.masks[0].shape[0]
        kept_in = torch.full((batch,), float(self.input_channels), device=record.masks[0].device)
        total = torch.zeros_like(kept_in)
        for layer, mask, grid in zip(self.layers, record.masks, record.grids, strict=True):
            kept_out = mask.sum(dim=1)
            total += kept_out * kept_in / layer.conv.groups * layer.kernel_size * grid
            kept_in = kept_out
        return total

    def dense_macs(self, record: GateRecord | None = None) -> int:
        """Conv MACs of one input with every filter kept."""
        record = record or self.record
        channels, total = self.input_channels, 0
        for layer, grid in zip(self.layers, record.grids, strict=True):
            total += (
                layer.conv.out_channels * channels // layer.conv.groups * layer.kernel_size * grid
            )
            channels = layer.conv.out_channels
        return total

    @property
    def predictor_macs(self) -> int:
        """MACs all predictors add to one input."""
        return sum(predictor.macs for predictor in self.predictors)

    def layer_names(self) -> Iterator[str]:
        """The gated layers' module names, in forward order."""
        return (layer.name for layer in self.layers)
