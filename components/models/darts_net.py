"""A searched DARTS architecture, retrained from scratch as an ordinary registered model.

DARTS (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019) searches a
supernet and then, in its evaluation phase, trains the discrete network that the genotype
describes from scratch (section 3.3). ``darts_net`` is that network
(:class:`~components.models.nas_cells.DerivedNetwork`: stem, cells, global average pooling,
linear head), so a genotype found by a DARTS, SD-DARTS or random-search-with-weight-sharing
sweep is retrained through the normal training path (stages, checkpoints, reports).

The genotype is a keyword argument in :meth:`Genotype.to_dict` form,
``{"normal": [[op, input], ...], "reduce": [...]}``: plain JSON, so it is stored verbatim in a
checkpoint's ``model.json`` and the model can be rebuilt from it. This module takes only that
form; reading a ``genotype.json`` path is the flows' job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from components.models.base import (
    ModelOutput,
    SennModel,
    check_batch,
    check_build_args,
    override_config,
    register_model,
)
from components.models.nas_cells import DerivedNetwork
from components.models.nas_ops import Genotype, coerce_genotype

# A hand-written two-node genotype; the tiny variant uses it so that generic registry and
# training tests can build every model by name alone.
TINY_GENOTYPE: dict[str, list[list[str | int]]] = {
    "normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ["dil_conv_3x3", 1], ["max_pool_3x3", 2]],
    "reduce": [["max_pool_3x3", 0], ["sep_conv_3x3", 1], ["skip_connect", 2], ["avg_pool_3x3", 0]],
}


@dataclass(frozen=True)
class DartsNetConfig:
    """Hyperparameters of :class:`DartsNet`.

    Attributes:
        genotype: the searched cells (required; a :meth:`Genotype.to_dict` mapping is parsed
            into a :class:`Genotype`).
        channels: stem / first-cell channels, doubled by each of the two reduction cells.
        cells: number of cells (>= 3); the cells at 1/3 and 2/3 of the depth reduce.
    """

    genotype: Genotype | None = None
    channels: int = 8
    cells: int = 3

    def __post_init__(self) -> None:
        if self.genotype is not None:
            genotype = coerce_genotype(self.genotype, param="model.params.genotype")
            object.__setattr__(self, "genotype", genotype)
        if int(self.channels) < 1 or int(self.cells) < 3:
            raise ValueError(
                f"DartsNetConfig needs channels >= 1 and cells >= 3 (two reduction cells), "
                f"got channels={self.channels}, cells={self.cells}"
            )

    @classmethod
    def tiny(cls) -> DartsNetConfig:
        """The small variant used by tests: 2 channels and a fixed two-node genotype."""
        return cls(genotype=TINY_GENOTYPE, channels=2, cells=3)


class DartsNet(SennModel):
    """A derived DARTS network returning :class:`ModelOutput` logits.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: number of output classes.
        config: hyperparameters, with the genotype.

    Raises:
        ValueError: if ``input_shape`` is not 3-D or the config holds no genotype.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: DartsNetConfig = DartsNetConfig(),
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="darts_net")
        if len(input_shape) != 3:
            raise ValueError(
                f"model 'darts_net' needs image input (C, H, W), got input_shape "
                f"{tuple(input_shape)}: its cells are 2-D convolutions"
            )
        genotype = coerce_genotype(config.genotype, param="model.params.genotype")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        self.net = DerivedNetwork(
            input_shape=self.input_shape,
            num_classes=num_classes,
            genotype=genotype,
            channels=config.channels,
            cells=config.cells,
        )

    @property
    def genotype(self) -> Genotype:
        """The architecture this network was built from."""
        return self.net.genotype

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_batch(x, self.input_shape, model="darts_net")
        return ModelOutput(logits=self.net(x))


@register_model("darts_net")
def build_darts_net(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> DartsNet:
    """Registry builder: ``kwargs`` override :class:`DartsNetConfig` fields; ``genotype`` is
    required unless ``tiny`` (whose config carries :data:`TINY_GENOTYPE`)."""
    base = DartsNetConfig.tiny() if tiny else DartsNetConfig()
    config = override_config(base, kwargs, model="darts_net")
    return DartsNet(input_shape=input_shape, num_classes=num_classes, config=config)
