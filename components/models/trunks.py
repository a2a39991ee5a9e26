"""Feature trunks for the part-prototype models and the black-box baseline.

Two kinds, both mapping an input to a latent grid ``(N, out_channels, h, w)`` and telling its
size through ``grid_size``:

* ``conv``: the small from-scratch :class:`~components.models.backbones.ConvBackbone`
  (2-D for images ``(C, H, W)``, 1-D for signals ``(C, L)``);
* the convolutional part of a torchvision classifier (``resnet18/34/50``, ``vgg11/16/19``,
  ``densenet121``: the trunks of the ProtoPNet, ST-ProtoPNet and EvalProtoPNet papers), without
  its pooling and classifier head. The trunk's parameter names are exactly torchvision's
  (``conv1.weight``, ``layer1.0.bn1.running_mean``, ``features.0.weight`` ...), so an ImageNet
  state dict of the whole classifier loads into it once its head keys are set aside (see
  :mod:`components.training.pretrained`; this module does no IO);
* ``halonet_tiny`` / ``halonet_small``: blocked local self-attention trunks
  (:mod:`components.models.halonet`, HaloNet, Vaswani et al. 2021), from scratch only, for
  images with any number of channels (an RGB 32x32 image gives an 8x8 grid).

Every torchvision trunk downsamples by 32 (224 -> 7x7, as in the papers); the grid size is
found by one forward pass of a blank image when first asked, so each architecture's rounding
(ceil for ResNet's strided convolutions, floor for VGG's pooling) is what it really does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from components.models.backbones import ConvBackbone
from components.models.halonet import HALONET_TRUNKS, HaloNetTrunk

TORCHVISION_TRUNKS = ("resnet18", "resnet34", "resnet50", "vgg11", "vgg16", "vgg19", "densenet121")
TRUNKS = ("conv", *TORCHVISION_TRUNKS, *HALONET_TRUNKS)
_VGG_CONFIGS = {"vgg11": "A", "vgg16": "D", "vgg19": "E"}
_RESNET_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class TorchvisionTrunk(nn.Module):
    """The convolutional part of torchvision's ``name`` classifier, randomly initialised.

    Args:
        name: one of :data:`TORCHVISION_TRUNKS`.

    Attributes:
        arch: the torchvision architecture name (what pretrained weights must be for).
        out_channels: channels of the latent grid (ResNet-18/34 and VGG 512, ResNet-50 2048,
            DenseNet-121 1024).
        head_prefixes: key prefixes of the classifier head in torchvision's state dict, which
            the trunk does not have.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in TORCHVISION_TRUNKS:
            raise ValueError(f"unknown trunk {name!r}; choose from {list(TRUNKS)}")
        self.arch = name
        if name.startswith("vgg"):
            self.features, self.out_channels = _vgg_features(name), 512
            self.head_prefixes = ("classifier.",)
        else:
            import torchvision

            classifier = torchvision.models.get_model(name, weights=None)
            if name.startswith("resnet"):
                for layer in _RESNET_LAYERS:
                    setattr(self, layer, getattr(classifier, layer))
                self.out_channels, self.head_prefixes = classifier.fc.in_features, ("fc.",)
            else:
                self.features = classifier.features
                self.out_channels = classifier.classifier.in_features
                self.head_prefixes = ("classifier.",)
        self._grids: dict[tuple[int, int], tuple[int, int]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch.startswith("resnet"):
            for layer in _RESNET_LAYERS:
                x = getattr(self, layer)(x)
            return x
        x = self.features(x)
        # torchvision's DenseNet applies the final ReLU in its forward, after norm5
        return F.relu(x) if self.arch.startswith("densenet") else x

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The latent grid ``(h, w)`` produced from an ``height x width`` image."""
        key = (height, width)
        if key not in self._grids:
            was_training = self.training
            self.eval()
            with torch.no_grad():
                blank = torch.zeros(1, 3, height, width, device=_device(self))
                self._grids[key] = tuple(self(blank).shape[-2:])
            self.train(was_training)
        return self._grids[key]


def build_trunk(
    name: str, input_shape: tuple[int, ...], channels: tuple[int, ...], pools: int
) -> nn.Module:
    """The trunk ``name`` for samples of ``input_shape``.

    Args:
        name: ``conv``, one of :data:`TORCHVISION_TRUNKS` or of :data:`HALONET_TRUNKS`.
        input_shape: ``(C, H, W)`` images, or ``(C, L)`` signals (``conv`` only).
        channels: output channels of each ``conv`` block.
        pools: how many ``conv`` blocks halve the grid.

    Raises:
        ValueError: an unknown trunk, a torchvision trunk for input that is not 3-channel
            images, or a HaloNet trunk for input that is not images.
    """
    if name == "conv":
        return ConvBackbone(input_shape[0], channels, pools, dims=len(input_shape) - 1)
    if name in HALONET_TRUNKS:
        if len(input_shape) != 3:
            raise ValueError(
                f"backbone {name!r} attends over 2-D images (C, H, W); got input_shape "
                f"{tuple(input_shape)}: use backbone=conv"
            )
        return HaloNetTrunk(name, input_shape[0])
    if name not in TORCHVISION_TRUNKS:
        raise ValueError(f"unknown backbone {name!r}; choose from {list(TRUNKS)}")
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ValueError(
            f"backbone {name!r} is a torchvision ImageNet architecture for RGB images "
            f"(3, H, W); got input_shape {tuple(input_shape)}: use backbone=conv"
        )
    return TorchvisionTrunk(name)


def _vgg_features(name: str) -> nn.Sequential:
    """VGG's conv layers alone, initialised as torchvision's VGG does (building the whole
    classifier would first allocate and initialise its 120M-parameter head)."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs[_VGG_CONFIGS[name]], batch_norm=False)
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return features


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
