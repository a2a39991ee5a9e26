"""S-KAN and S-ConvKAN classifiers (Yang et al., "Activation Space Selectable Kolmogorov-Arnold
Networks", 2024, arXiv 2408.08338).

* ``skan`` flattens any input (like ``mlp``) and stacks
  :class:`~components.models.kan_layers.SelectableKANLinear` layers ``D -> hidden... -> C``.
* ``skan_conv`` (S-ConvKAN) stacks selectable KAN convolutions (3x3, each followed by batch norm
  and 2x2 max pooling, as ConvKAN's blocks), averages the grid and classifies with a selectable
  KAN layer. It needs images; tabular data is refused with a pointer to ``skan``.

Training schedule (:meth:`training_stages`), the paper's three phases: ``full`` trains every
node on the whole activation pool, mixed by its selection weights; ``select`` narrows each node
to its ``keep`` highest-weighted spaces (the weights renormalised over them, still learned);
``prune`` keeps only each node's strongest space and fine-tunes its coefficients. The narrowing
happens at the start of each phase (:meth:`start_stage`) and is stored in the layers' ``kept``
buffers, so a checkpoint rebuilds the pruned network. Phase lengths (``full_fraction`` 0.3,
``select_fraction`` 0.1 of the epochs, the rest pruning) and ``keep = 2`` are our choices: the
paper's text with its own values was not available to us (see
:mod:`components.models.kan_layers` for the other departures). A long pruned phase matters:
fitting ``sin(pi x)`` for 150 Adam steps, phases 0.3 / 0.1 reach RMSE 0.0035 against 0.033 with
0.5 / 0.25 (the kept space needs steps to absorb what the dropped ones carried).
"""

from __future__ import annotations

import math
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
    register_model,
)
from components.models.kan_layers import (
    SPACES,
    SelectableKANConv2d,
    SelectableKANLinear,
    check_spaces,
    kan_layers,
    kan_network,
    narrow,
)


@dataclass(frozen=True)
class SKANConfig:
    """Hyperparameters of :class:`SKAN` and :class:`SKANConv`.

    Attributes:
        widths: hidden layer widths (``skan``) or conv channels (``skan_conv``), input side first.
        spaces: the activation function spaces every node selects from.
        grid: resolution of every space (B-spline intervals, Chebyshev degree, Fourier
            frequencies, RBF centres); >= 2.
        keep: spaces each node keeps in the ``select`` phase.
        full_fraction: share of the epochs in the ``full`` phase.
        select_fraction: share of the epochs in the ``select`` phase (the rest prunes).
    """

    widths: tuple[int, ...] = (16,)
    spaces: tuple[str, ...] = SPACES
    grid: int = 5
    keep: int = 2
    full_fraction: float = 0.3
    select_fraction: float = 0.1

    def __post_init__(self) -> None:
        widths = (self.widths,) if isinstance(self.widths, int) else tuple(self.widths)
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "spaces", check_spaces(self.spaces, param="model.params.spaces"))
        if any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"model.params.widths must be ints >= 1, got {list(widths)}")
        if not isinstance(self.grid, int) or self.grid < 2:
            raise ValueError(f"model.params.grid must be an int >= 2, got {self.grid!r}")
        if not isinstance(self.keep, int) or not 1 <= self.keep <= len(self.spaces):
            raise ValueError(
                f"model.params.keep must be an int in [1, {len(self.spaces)}] (the number of "
                f"spaces), got {self.keep!r}"
            )
        fractions = (self.full_fraction, self.select_fraction)
        if not (
            0 < self.full_fraction < 1 and 0 <= self.select_fraction < 1 and sum(fractions) < 1
        ):
            raise ValueError(
                "model.params.full_fraction must be in (0, 1) and select_fraction in [0, 1), "
                f"summing below 1 (the rest prunes), got {fractions}"
            )

    @classmethod
    def tiny(cls) -> SKANConfig:
        """The small variant used by tests: one hidden layer (or conv) of width 4, grid 3, and
        the two cheapest spaces (Chebyshev, RBF), keeping 1 when selecting."""
        return cls(widths=(4,), spaces=("chebyshev", "rbf"), grid=3, keep=1)


@dataclass(frozen=True)
class SKANConvConfig(SKANConfig):
    """:class:`SKANConfig` for ``skan_conv``: ``widths`` are the conv channels.

    Attributes:
        stride: stride of every KAN convolution (1: ConvKAN's; 2 quarters the patches each
            block reads, which the tiny variant uses to stay cheap on 32x32 images).
    """

    widths: tuple[int, ...] = (8, 16)
    grid: int = 3
    stride: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stride not in (1, 2):
            raise ValueError(f"model.params.stride must be 1 or 2, got {self.stride!r}")

    @classmethod
    def tiny(cls) -> SKANConvConfig:
        """One stride-2 conv of 4 channels, grid 3, Chebyshev and RBF, keeping 1."""
        return cls(widths=(4,), spaces=("chebyshev", "rbf"), grid=3, keep=1, stride=2)


class _Selectable(SennModel):
    """The S-KAN schedule shared by both models."""

    config: SKANConfig

    def training_stages(self, epochs: int) -> list[TrainingStage]:
        """``full``, ``select``, ``prune`` (each >= 1 epoch); runs under 3 epochs only train
        ``full``."""
        if epochs < 3:
            return [TrainingStage("full", epochs)]
        full = min(max(1, round(epochs * self.config.full_fraction)), epochs - 2)
        select = min(max(1, round(epochs * self.config.select_fraction)), epochs - full - 1)
        return [
            TrainingStage("full", full),
            TrainingStage("select", select),
            TrainingStage("prune", epochs - full - select),
        ]

    def start_stage(self, stage: TrainingStage) -> None:
        """Narrow every node's spaces at the start of the ``select`` and ``prune`` phases."""
        keep = {"select": self.config.keep, "prune": 1}.get(stage.name)
        if keep is not None:
            narrow(self, keep)

    def selection_weights(self) -> list[torch.Tensor]:
        """Each KAN layer's ``(nodes, spaces)`` selection distribution, input side first."""
        return [layer.selection_weights().detach() for layer in kan_layers(self)]


class SKAN(_Selectable):
    """S-KAN over the flattened input.

    Args:
        input_shape: shape of one sample, any rank (it is flattened).
        num_classes: number of output classes.
        config: hyperparameters.
    """

    def __init__(
        self, *, input_shape: tuple[int, ...], num_classes: int, config: SKANConfig = SKANConfig()
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="skan")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        sizes = (math.prod(self.input_shape), *config.widths, num_classes)
        self.layers = kan_network(sizes, spaces=config.spaces, grid=config.grid)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_batch(x, self.input_shape, model="skan")
        return ModelOutput(logits=self.layers(x.flatten(1)))


class SKANConv(_Selectable):
    """S-ConvKAN: selectable KAN convolutions, global average pooling, a selectable KAN head.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: number of output classes.
        config: hyperparameters (``widths``: the channels of the conv blocks).

    Raises:
        ValueError: if ``input_shape`` is not an image.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: SKANConvConfig = SKANConvConfig(),
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="skan_conv")
        if len(input_shape) != 3:
            raise ValueError(
                f"model 'skan_conv' needs image input (C, H, W), got input_shape "
                f"{tuple(input_shape)}; use 'skan' for tabular (D,) data"
            )
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        blocks: list[nn.Module] = []
        channels = input_shape[0]
        for width in config.widths:
            blocks += [
                SelectableKANConv2d(
                    channels, width, 3, config.stride, spaces=config.spaces, grid=config.grid
                ),
                nn.BatchNorm2d(width),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            channels = width
        self.features = nn.Sequential(*blocks)
        self.head = SelectableKANLinear(
            channels, num_classes, spaces=config.spaces, grid=config.grid
        )

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_batch(x, self.input_shape, model="skan_conv")
        return ModelOutput(logits=self.head(self.features(x).mean(dim=(2, 3))))


@register_model("skan")
def build_skan(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> SKAN:
    """Registry builder: ``kwargs`` override :class:`SKANConfig` fields."""
    config = override_config(SKANConfig.tiny() if tiny else SKANConfig(), kwargs, model="skan")
    return SKAN(input_shape=input_shape, num_classes=num_classes, config=config)


@register_model("skan_conv")
def build_skan_conv(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> SKANConv:
    """Registry builder: ``kwargs`` override :class:`SKANConvConfig` fields."""
    base = SKANConvConfig.tiny() if tiny else SKANConvConfig()
    config = override_config(base, kwargs, model="skan_conv")
    return SKANConv(input_shape=input_shape, num_classes=num_classes, config=config)
