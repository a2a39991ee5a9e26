"""Small convolutional feature extractors shared by the part-prototype models.

For 1-D signals ``(C, L)`` the same blocks use 1-D convolutions and pooling (kernel 3, pool
2), so a prototype is a patch of the signal instead of a patch of an image.

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
        in_channels: input image (or signal) channels.
        channels: output channels of each block.
        num_pools: how many blocks (from the first) halve the grid; at most ``len(channels)``.
        dims: 2 for images ``(C, H, W)``, 1 for signals ``(C, L)``.

    Raises:
        ValueError: if ``num_pools`` is negative or exceeds the number of blocks, or ``dims``
            is not 1 or 2.
    """

    def __init__(
        self, in_channels: int, channels: tuple[int, ...], num_pools: int, dims: int = 2
    ) -> None:
        if not 0 <= num_pools <= len(channels):
            raise ValueError(f"num_pools must be in [0, {len(channels)}], got {num_pools}")
        conv, pool = conv_layers(dims)
        layers: list[nn.Module] = []
        for block, out_channels in enumerate(channels):
            layers += [conv(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
            if block < num_pools:
                layers.append(pool(2, ceil_mode=True))
            in_channels = out_channels
        super().__init__(*layers)
        self.out_channels = in_channels
        self.num_pools = num_pools

    def grid_size(self, *sizes: int) -> tuple[int, ...]:
        """The latent grid produced from an input of spatial ``sizes`` (``h, w`` or ``l``)."""
        for _ in range(self.num_pools):
            sizes = tuple(math.ceil(n / 2) for n in sizes)
        return tuple(sizes)


def conv_layers(dims: int) -> tuple[type[nn.Module], type[nn.Module]]:
    """The convolution and max-pool classes for images (``dims=2``) or signals (``dims=1``)."""
    if dims not in (1, 2):
        raise ValueError(f"convolutions over 1-D signals or 2-D images only, got {dims}-D input")
    return (nn.Conv2d, nn.MaxPool2d) if dims == 2 else (nn.Conv1d, nn.MaxPool1d)
