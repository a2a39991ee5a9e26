"""A BossNAS-searched hybrid CNN-transformer, retrained from scratch as a registered model.

BossNAS (Li et al., ICCV 2021) searches the HyTra space block by block without labels
(:mod:`components.search.bossnas`) and then trains the searched network, BossNet, with labels
from scratch. ``bossnas_net`` is that network (:class:`~components.models.hytra.HyTraNet`: stem,
the searched conv / attention layers at their searched resolutions, global average pooling, a
linear head), so a ``search=bossnas`` sweep's result trains through the normal path.

The architecture is a keyword argument ``{"blocks": [[[op, level], ...], ...]}``
(:func:`~components.models.hytra.parse_architecture`): plain JSON, stored verbatim in a
checkpoint's ``model.json``. Reading a ``genotype.json`` path is the flows' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from components.models.base import (
    ModelOutput,
    SennModel,
    check_batch,
    check_build_args,
    override_config,
    register_model,
)
from components.models.hytra import HyTraNet, channels, parse_architecture

PARAM = "model.params.architecture"
# Two one-layer blocks, a convolution that halves the grid then attention that halves it again:
# what the tiny variant (and the registry tests' full-size build) uses. Attention at full
# resolution would see 1,024 tokens per 32x32 image; that attention matrix alone made a 4-epoch
# test of the tiny variant on `parts` take 30 s.
TINY_ARCHITECTURE: dict[str, list] = {"blocks": [[["conv", 1]], [["attn", 2]]]}


@dataclass(frozen=True)
class BossNetConfig:
    """Hyperparameters of :class:`BossNet`.

    Attributes:
        architecture: the searched blocks (required): ``{"blocks": [[[op, level], ...], ...]}``.
        width: channels at the stem's resolution (doubled at every halving).
        expansion: bottleneck ratio: a layer's inner width is its channels / ``expansion``.
        heads: attention heads (must divide the inner width of every attention layer).
    """

    architecture: Any = None
    width: int = 16
    expansion: int = 4
    heads: int = 2

    def __post_init__(self) -> None:
        for name in ("width", "expansion", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.params.{name} must be an int >= 1, got {value!r}")

    @classmethod
    def tiny(cls) -> BossNetConfig:
        """The small variant used by tests: 4 channels, :data:`TINY_ARCHITECTURE`."""
        return cls(architecture=TINY_ARCHITECTURE, width=4, expansion=2, heads=2)


class BossNet(SennModel):
    """The searched HyTra network returning :class:`ModelOutput` logits.

    Raises:
        ValueError: if ``input_shape`` is not an image ``(C, H, W)``, the architecture is
            missing or invalid, or ``heads`` does not divide an attention layer's width.
    """

    def __init__(
        self, *, input_shape: tuple[int, ...], num_classes: int, config: BossNetConfig
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="bossnas_net")
        if len(input_shape) != 3:
            raise ValueError(
                f"model 'bossnas_net' needs image input (C, H, W), got input_shape "
                f"{tuple(input_shape)}: its layers are 2-D convolutions and attention over "
                "positions; use 'mlp' for tabular (D,) data"
            )
        blocks = parse_architecture(config.architecture, param=PARAM)
        _check_heads(blocks, config)
        self.input_shape = tuple(input_shape)
        self.config = config
        self.blocks = blocks
        self.net = HyTraNet(
            input_shape[0],
            num_classes,
            blocks,
            width=config.width,
            expansion=config.expansion,
            heads=config.heads,
        )

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_batch(x, self.input_shape, model="bossnas_net")
        return ModelOutput(logits=self.net(x))


def _check_heads(blocks, config: BossNetConfig) -> None:
    for block in blocks:
        for op, level in block:
            inner = max(channels(config.width, level) // config.expansion, 1)
            if op == "attn" and inner % config.heads:
                raise ValueError(
                    f"model.params.heads={config.heads} does not divide the width {inner} of the "
                    f"attention layer at level {level} (width * 2**level / expansion)"
                )


@register_model("bossnas_net")
def build_bossnas_net(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> BossNet:
    """Registry builder: ``kwargs`` override :class:`BossNetConfig` fields; ``architecture`` is
    required unless ``tiny``."""
    base = BossNetConfig.tiny() if tiny else BossNetConfig()
    config = override_config(base, kwargs, model="bossnas_net")
    return BossNet(input_shape=input_shape, num_classes=num_classes, config=config)
