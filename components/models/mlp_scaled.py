"""Scaled MLP with inverted-bottleneck blocks (Bachmann, Anagnostidis & Hofmann, NeurIPS 2023).

"Scaling MLPs: A Tale of Inductive Bias", reference code ``gregorbachmann/scaling_mlps``
(``models/networks.py: BottleneckMLP``, read for this module). The input is flattened and
embedded by one linear layer into ``width`` features; ``depth`` residual blocks follow, each

    z <- z + W2 GELU(W1 LayerNorm(z)),    W1: width -> expansion * width, W2: back to width

(pre-LayerNorm, as the reference code's ``x = x + block(norm(x))``), and a linear head maps the
last ``z`` to the logits. The paper names architectures ``B_<depth>-Wi_<width>`` with expansion 4
(its largest, ``B_12-Wi_1024``, has 124M parameters); the default here is ``B_4-Wi_256``, a size
this project's CPUs train in minutes. The parameter count is :func:`parameter_count`.

Departures:

* No final LayerNorm before the head: the reference code has none (the issue's sketch of the
  architecture mentions one; the code is followed).
* ``dropout`` (default 0, as the paper) after the embedding and after every block, where the
  reference code's optional ``drop_rate`` sits.
* Training recipe: the paper trains with LION (lr 5e-5, batch 4096-16384) or LAMB, label
  smoothing 0.3, random crops, horizontal flips and MixUp (alpha 0.8, one lambda per batch).
  Here ``conf/model/mlp_scaled.yaml`` uses AdamW (torch has neither LION nor LAMB; LAMB is
  AdamW with a layer-wise trust ratio, which matters at the paper's huge batches, not at 64-256),
  ``train.label_smoothing=0.3`` and ``train.mixup=0.8`` (:mod:`components.training.mixup`), and
  the crops and flips of ``data.augment=light`` (:mod:`components.data.image_transforms`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from components.models.base import (
    ModelOutput,
    SennModel,
    check_batch,
    check_build_args,
    override_config,
    probability,
    register_model,
)


@dataclass(frozen=True)
class MLPScaledConfig:
    """Hyperparameters of :class:`MLPScaled`.

    Attributes:
        width: features of the residual stream (the paper's ``Wi``).
        depth: number of inverted-bottleneck blocks (the paper's ``B``).
        expansion: hidden width of each block as a multiple of ``width`` (the paper's 4).
        dropout: dropout probability after the embedding and after every block.
    """

    width: int = 256
    depth: int = 4
    expansion: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name, least in (("width", 1), ("depth", 0), ("expansion", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"model.params.{name} must be an int >= {least}, got {value!r} "
                    f"(model 'mlp_scaled')"
                )
        probability(self, "dropout")

    @classmethod
    def tiny(cls) -> MLPScaledConfig:
        """The small variant used by tests."""
        return cls(width=8, depth=1, expansion=2)


def parameter_count(input_dim: int, num_classes: int, config: MLPScaledConfig) -> int:
    """Trainable parameters of :class:`MLPScaled`, in closed form.

    Embedding ``(d_in + 1) w``; per block a LayerNorm ``2w`` and two linears
    ``(w + 1) e w + (e w + 1) w``; head ``(w + 1) C``.
    """
    w, e = config.width, config.expansion
    block = 2 * w + (w + 1) * e * w + (e * w + 1) * w
    return (input_dim + 1) * w + config.depth * block + (w + 1) * num_classes


class BottleneckBlock(nn.Module):
    """The residual branch ``W2 GELU(W1 LayerNorm(z))``; the block returns ``z + branch(z)``."""

    def __init__(self, width: int, expansion: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, expansion * width)
        self.act = nn.GELU()
        self.down = nn.Linear(expansion * width, width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.down(self.act(self.up(self.norm(z))))


class MLPScaled(SennModel):
    """Flatten, embed, ``depth`` pre-LayerNorm inverted-bottleneck blocks, linear head.

    Args:
        input_shape: shape of one sample, any rank (it is flattened).
        num_classes: number of output classes.
        config: hyperparameters.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: MLPScaledConfig = MLPScaledConfig(),
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="mlp_scaled")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(self.input_shape), config.width)
        )
        self.blocks = nn.ModuleList(
            BottleneckBlock(config.width, config.expansion) for _ in range(config.depth)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.width, num_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_batch(x, self.input_shape, model="mlp_scaled")
        z = self.dropout(self.embed(x))
        for block in self.blocks:
            z = self.dropout(block(z))
        return ModelOutput(logits=self.head(z))


@register_model("mlp_scaled")
def build_mlp_scaled(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> MLPScaled:
    """Registry builder: ``kwargs`` override :class:`MLPScaledConfig` fields."""
    base = MLPScaledConfig.tiny() if tiny else MLPScaledConfig()
    config = override_config(base, kwargs, model="mlp_scaled")
    return MLPScaled(input_shape=input_shape, num_classes=num_classes, config=config)
