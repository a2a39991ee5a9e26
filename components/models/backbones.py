"""Small convolutional feature extractors shared by the part-prototype models.

The papers put ImageNet-pretrained VGG/ResNet/DenseNet trunks under their prototype layers; on
8x8 digits and ~32x32 synthetic part images, trained from scratch on 2 CPU cores, a few
``conv3x3 -> ReLU`` blocks give a latent grid of the same kind (``(D, h, w)``, one feature
vector per image patch) at a fraction of the cost. There is no BatchNorm (as in ProtoPNet's VGG
trunks): its running statistics would keep moving while the last layer trains after a push,
and a pushed prototype would no longer be exactly the latent patch it was copied from.
"""

from __future__ import annotations

import math

from torch import nn


class ConvBackbone(nn.Sequential):
    """``conv3x3 -> ReLU`` blocks; a 2x2 max-pool follows each of the first ``num_pools``
    blocks (ceil mode, so odd sizes never shrink to zero).

    Args:
        in_channels: input image channels.
        channels: output channels of each block.
        num_pools: how many blocks (from the first) halve the grid; at most ``len(channels)``.

    Raises:
        ValueError: if ``num_pools`` is negative or exceeds the number of blocks.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], num_pools: int) -> None:
        if not 0 <= num_pools <= len(channels):
            raise ValueError(f"num_pools must be in [0, {len(channels)}], got {num_pools}")
        layers: list[nn.Module] = []
        for block, out_channels in enumerate(channels):
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                nn.ReLU(),
            ]
            if block < num_pools:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            in_channels = out_channels
        super().__init__(*layers)
        self.out_channels = in_channels
        self.num_pools = num_pools

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The latent grid ``(h, w)`` produced from an ``height x width`` image."""
        for _ in range(self.num_pools):
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        return height, width
