"""Small convolutional baseline for images ``(C, H, W)`` and signals ``(C, L)``.

Each block is ``conv3x3 -> ReLU -> maxpool 2x2`` (ceil mode, so odd or tiny images never shrink
to zero; kernel 3 and pool 2 with 1-D convolutions for signals), followed by a dropout + linear
head over the flattened feature map. Tabular ``(D,)`` input is rejected rather than reshaped: a
convolution over feature order would invent a locality that tabular columns do not have; use
``mlp`` there (or give a time series its ``(C, L)`` shape with ``data.feature_shape``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from components.models.backbones import conv_layers
from components.models.base import (
    ModelOutput,
    SennModel,
    check_batch,
    check_build_args,
    override_config,
    positive_ints,
    probability,
    register_model,
)


@dataclass(frozen=True)
class CNNConfig:
    """Hyperparameters of :class:`CNN`.

    Attributes:
        channels: output channels of each conv block; each block halves height and width.
        dropout: dropout probability before the linear head.
    """

    channels: tuple[int, ...] = (32, 64)
    dropout: float = 0.2

    def __post_init__(self) -> None:
        positive_ints(self, "channels")
        probability(self, "dropout")

    @classmethod
    def tiny(cls) -> CNNConfig:
        """The small variant used by tests."""
        return cls(channels=(4,), dropout=0.0)


class CNN(SennModel):
    """Conv blocks then a linear classifier.

    Args:
        input_shape: ``(C, H, W)`` or ``(C, L)``.
        num_classes: number of output classes.
        config: hyperparameters.

    Raises:
        ValueError: if ``input_shape`` is neither 2-D nor 3-D.
    """

    def __init__(
        self, *, input_shape: tuple[int, ...], num_classes: int, config: CNNConfig = CNNConfig()
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="cnn")
        if len(input_shape) not in (2, 3):
            raise ValueError(
                f"model 'cnn' needs image input (C, H, W) or signal input (C, L), got "
                f"input_shape {tuple(input_shape)}; use 'mlp' for tabular (D,) data"
            )
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        channels, *sizes = self.input_shape
        conv, pool = conv_layers(len(sizes))
        blocks: list[nn.Module] = []
        for out_channels in config.channels:
            blocks += [
                conv(channels, out_channels, kernel_size=3, padding=1),
                nn.ReLU(),
                pool(2, ceil_mode=True),
            ]
            channels, sizes = out_channels, [math.ceil(n / 2) for n in sizes]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(channels * math.prod(sizes), num_classes),
        )

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The conv trunk's feature map flattened, ``(N, channels * h * w)``."""
        check_batch(x, self.input_shape, model="cnn")
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_batch(x, self.input_shape, model="cnn")
        return ModelOutput(logits=self.head(self.features(x)))


@register_model("cnn")
def build_cnn(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> CNN:
    """Registry builder: ``kwargs`` override :class:`CNNConfig` fields."""
    config = override_config(CNNConfig.tiny() if tiny else CNNConfig(), kwargs, model="cnn")
    return CNN(input_shape=input_shape, num_classes=num_classes, config=config)
