"""Best-response versions of the pipeline's own models (STN, MacKay et al., ICLR 2019, Sec. 4.2).

:func:`best_response` copies a model (``cnn``, ``proto_ae``, ``protopnet``, ``mlp``, ...) and
swaps every ``nn.Conv2d``, ``nn.Linear`` and ``nn.Dropout`` for a best-response version that
reads the hyperparameters from a shared :class:`HyperContext`, so the model's own ``forward`` and
``loss`` run unchanged while the weights respond to the hyperparameters:

* :class:`BestResponseConv2d` (the paper's ``StnConv2d``): ``conv(x, W) + conv(x, V) * (H lambda)``,
  the response convolution's output channels scaled, example by example, by a linear embedding
  of the hyperparameters;
* :class:`BestResponseLinear`: ``W x + b + (V x + c) * (H lambda)`` (Eq. 9);
* :class:`BestResponseDropout`: the per-example rate of the sampled hyperparameters; with a
  temperature, a concrete (relaxed Bernoulli) mask so the validation loss is differentiable in
  the rate.

The general weights ``W, b`` keep the module's own names (``weight``, ``bias``) and initial
values, so code that reads them (ProtoPNet's last-layer L1 term, its class-connection init)
still works. At a fixed hyperparameter vector every layer is a plain layer with weights
``W`` and bias ``b + c * (H lambda)`` plus a fixed response; with the gate ``H`` zero it is
exactly the original layer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class HyperContext:
    """What the best-response layers read during one forward pass.

    Attributes:
        hyper: ``(N, num_hyper)`` hyperparameter inputs (``None``: the layers are plain).
        dropout: ``(N,)`` dropout rates (``None``: no dropout, as at evaluation).
        temperature: concrete-dropout temperature (``None``: hard Bernoulli masks).
        generator: seeded generator for the dropout masks.
    """

    hyper: torch.Tensor | None = None
    dropout: torch.Tensor | None = None
    temperature: float | None = None
    generator: torch.Generator | None = None


def _gate(num_out: int, num_hyper: int, generator: torch.Generator) -> nn.Parameter:
    bound = 1.0 / math.sqrt(num_hyper)
    return nn.Parameter((torch.rand((num_out, num_hyper), generator=generator) * 2 - 1) * bound)


def _like(param: torch.Tensor, fan_in: int, generator: torch.Generator) -> nn.Parameter:
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    values = (torch.rand(param.shape, generator=generator) * 2 - 1) * bound
    return nn.Parameter(values.to(param.dtype))


def _with_response(cls, module, num_out, fan_in, context, num_hyper, generator):
    """``module`` as a ``cls`` sharing its weight tensors (the general weights stay the same),
    with response weights, a response bias and the hyper gate added."""
    layer = copy.copy(module)
    layer._parameters, layer._modules = dict(module._parameters), dict(module._modules)
    layer.__class__ = cls
    layer.response_weight = _like(module.weight, fan_in, generator)
    layer.response_bias = _like(torch.zeros(num_out), fan_in, generator)
    layer.hyper_gate = _gate(num_out, num_hyper, generator)
    object.__setattr__(layer, "context", context)
    return layer


class BestResponseConv2d(nn.Conv2d):
    """``nn.Conv2d`` plus a response convolution whose output channels the hyperparameters scale.

    Built with :meth:`from_conv`; ``weight`` / ``bias`` are the general weights.
    """

    context: HyperContext

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, context: HyperContext, num_hyper: int, generator: torch.Generator
    ) -> BestResponseConv2d:
        """Copy ``conv`` (weights included) and add the response weights and the gate."""
        fan_in = conv.weight[0].numel()
        return _with_response(cls, conv, conv.out_channels, fan_in, context, num_hyper, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        hyper = self.context.hyper
        if hyper is None:
            return out
        response = self._conv_forward(x, self.response_weight, self.response_bias)
        scale = (hyper.to(x.dtype) @ self.hyper_gate.T)[:, :, None, None]
        return out + response * scale


class BestResponseLinear(nn.Linear):
    """``nn.Linear`` plus a response map scaled unit by unit by ``H lambda`` (STN Eq. 9)."""

    context: HyperContext

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, context: HyperContext, num_hyper: int, generator: torch.Generator
    ) -> BestResponseLinear:
        """Copy ``linear`` (weights included) and add the response weights and the gate."""
        return _with_response(
            cls, linear, linear.out_features, linear.in_features, context, num_hyper, generator
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        hyper = self.context.hyper
        if hyper is None:
            return out
        response = nn.functional.linear(x, self.response_weight, self.response_bias)
        scale = hyper.to(x.dtype) @ self.hyper_gate.T
        # Linear layers may see (N, ..., D) inputs: broadcast the per-example gate over the middle.
        return out + response * scale.view(len(x), *([1] * (x.dim() - 2)), -1)


class BestResponseDropout(nn.Module):
    """Inverted dropout at the context's per-example rate; concrete masks with a temperature."""

    def __init__(self, context: HyperContext) -> None:
        super().__init__()
        object.__setattr__(self, "context", context)
        self.p = 0.0  # what the model was built with; the context's rate is what acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context
        relaxed = ctx.temperature is not None
        if ctx.dropout is None or not (self.training or relaxed):
            return x
        keep = (1.0 - ctx.dropout).to(x.dtype).view(len(x), *([1] * (x.dim() - 1)))
        keep = keep.expand_as(x)
        if not relaxed:
            return x * torch.bernoulli(keep.detach(), generator=ctx.generator) / keep
        eps = 1e-7
        u = torch.rand(x.shape, generator=ctx.generator).clamp(eps, 1 - eps)
        logit = torch.log(keep + eps) - torch.log(1 - keep + eps) + torch.log(u) - torch.log(1 - u)
        return x * torch.sigmoid(logit / ctx.temperature) / keep


def _swap(module: nn.Module, context: HyperContext, num_hyper: int, gen: torch.Generator) -> int:
    """Replace the children of ``module`` in place, recursively; return how many were swapped."""
    swapped = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d:
            new = BestResponseConv2d.from_conv(child, context, num_hyper, gen)
        elif type(child) is nn.Linear:
            new = BestResponseLinear.from_linear(child, context, num_hyper, gen)
        elif isinstance(child, nn.Dropout):
            new = BestResponseDropout(context)
            new.p = child.p
        else:
            swapped += _swap(child, context, num_hyper, gen)
            continue
        setattr(module, name, new)
        swapped += 1
    return swapped


def best_response(
    model: nn.Module, num_hyper: int, generator: torch.Generator
) -> tuple[nn.Module, HyperContext]:
    """A copy of ``model`` whose conv, linear and dropout layers respond to the hyperparameters.

    Args:
        model: a pipeline model (its ``forward`` and ``loss`` are kept).
        num_hyper: width of the hyperparameter vector.
        generator: seeded generator for the response weights and gates.

    Returns:
        The best-response model and the context its layers read (set it before each forward).

    Raises:
        ValueError: if the model has no ``nn.Conv2d`` or ``nn.Linear`` layer to make respond.
    """
    copied = copy.deepcopy(model)
    context = HyperContext()
    layers = _swap(copied, context, num_hyper, generator)
    if not any(isinstance(m, BestResponseConv2d | BestResponseLinear) for m in copied.modules()):
        raise ValueError(
            f"{type(model).__name__} has no Conv2d or Linear layer an STN can make respond to "
            f"its hyperparameters ({layers} layers swapped)"
        )
    return copied, context


def has_dropout(model: nn.Module) -> bool:
    """Whether ``model`` (or its best-response copy) has a dropout layer: dropout can be tuned."""
    return any(isinstance(m, nn.Dropout | BestResponseDropout) for m in model.modules())
