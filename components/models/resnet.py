"""The black-box baseline: a torchvision trunk with global average pooling and a linear head.

It is what the prototype papers compare against (ProtoPNet, Chen et al. 2019, Table 1: the
same VGG/ResNet/DenseNet trunks fine-tuned as plain classifiers), so a user can see what
interpretability costs in accuracy on their own data. ``backbone`` and ``pretrained`` are the
same as for :mod:`components.models.protopnet`; the default is ResNet-18 (the ``tiny`` test
variant puts the small from-scratch conv trunk under the same head). One training stage trains
everything at the base rate; with a pretrained trunk, ``features_lr_scale`` (default 0.1) slows
the trunk down, the usual fine-tuning practice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from components.models.base import (
    ModelOutput,
    SennModel,
    TrainingStage,
    check_batch,
    check_build_args,
    override_config,
    positive_ints,
    probability,
    register_model,
)
from components.models.trunks import TORCHVISION_TRUNKS, TRUNKS, build_trunk


@dataclass(frozen=True)
class ResNetConfig:
    """Hyperparameters of :class:`TrunkClassifier`.

    Attributes:
        backbone: a torchvision trunk (one of ``TORCHVISION_TRUNKS``), ``conv``, or a HaloNet
            trunk (``halonet_tiny`` / ``halonet_small``).
        pretrained: ImageNet weights for the trunk (a file or a torchvision weights name);
            ``None``: from scratch.
        backbone_channels: ``conv`` trunk only: output channels of each block.
        backbone_pools: ``conv`` trunk only: how many blocks halve the grid.
        dropout: dropout probability before the linear head.
        features_lr_scale: the trunk's learning rate as a multiple of the base rate, used
            when ``pretrained`` is set (from scratch everything trains at the base rate).
    """

    backbone: str = "resnet18"
    pretrained: str | None = None
    backbone_channels: tuple[int, ...] = (32, 64, 64)
    backbone_pools: int = 2
    dropout: float = 0.0
    features_lr_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.backbone not in TRUNKS:
            raise ValueError(f"ResNetConfig.backbone={self.backbone!r}: choose from {list(TRUNKS)}")
        if self.pretrained and self.backbone not in TORCHVISION_TRUNKS:
            raise ValueError(
                "ResNetConfig.pretrained needs a torchvision backbone "
                f"({', '.join(TORCHVISION_TRUNKS)}); backbone={self.backbone!r} is trained from "
                "scratch"
            )
        positive_ints(self, "backbone_channels")
        probability(self, "dropout")
        if self.features_lr_scale <= 0:
            raise ValueError(
                f"ResNetConfig.features_lr_scale must be > 0, got {self.features_lr_scale}"
            )

    @classmethod
    def tiny(cls) -> ResNetConfig:
        """The small variant used by tests: the conv trunk under the same head."""
        return cls(backbone="conv", backbone_channels=(8,), backbone_pools=1)


class TrunkClassifier(SennModel):
    """``trunk -> global average pool -> dropout -> linear``.

    Args:
        input_shape: ``(3, H, W)`` (torchvision trunks), ``(C, H, W)`` or ``(C, L)`` (conv).
        num_classes: number of output classes.
        config: hyperparameters.

    Raises:
        ValueError: if the trunk cannot take ``input_shape``.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: ResNetConfig = ResNetConfig(),
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="resnet")
        if len(input_shape) not in (2, 3):
            raise ValueError(
                f"model 'resnet' needs image input (C, H, W) or signal input (C, L), got "
                f"input_shape {tuple(input_shape)}"
            )
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        self.features = build_trunk(
            config.backbone, self.input_shape, config.backbone_channels, config.backbone_pools
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(self.features.out_channels, num_classes)
        )

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's features averaged over the grid, ``(N, channels)``: what the head reads."""
        check_batch(x, self.input_shape, model="resnet")
        return self.features(x).flatten(2).mean(dim=2)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=self.head(self.embedding(x)))

    def training_stages(self, epochs: int) -> list[TrainingStage]:
        """One stage; a pretrained trunk trains at ``features_lr_scale`` of the base rate."""
        if self.config.pretrained is None:
            return [TrainingStage("train", epochs)]
        rates = {"features": self.config.features_lr_scale, "head": 1.0}
        return [TrainingStage("fine_tune", epochs, rates)]


@register_model("resnet")
def build_resnet(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> TrunkClassifier:
    """Registry builder: ``kwargs`` override :class:`ResNetConfig` fields."""
    config = override_config(
        ResNetConfig.tiny() if tiny else ResNetConfig(), kwargs, model="resnet"
    )
    return TrunkClassifier(input_shape=input_shape, num_classes=num_classes, config=config)
