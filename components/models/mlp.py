"""Multi-layer perceptron baseline: flattens any input shape, then ReLU/dropout hidden layers."""

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
    positive_ints,
    probability,
    register_model,
)


@dataclass(frozen=True)
class MLPConfig:
    """Hyperparameters of :class:`MLP`.

    Attributes:
        hidden_sizes: width of each hidden layer, input side first.
        dropout: dropout probability after each hidden activation.
    """

    hidden_sizes: tuple[int, ...] = (256, 128)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        positive_ints(self, "hidden_sizes")
        probability(self, "dropout")

    @classmethod
    def tiny(cls) -> MLPConfig:
        """The small variant used by tests."""
        return cls(hidden_sizes=(16,), dropout=0.0)


class MLP(SennModel):
    """Fully connected classifier over the flattened input.

    Args:
        input_shape: shape of one sample, any rank (it is flattened).
        num_classes: number of output classes.
        config: hyperparameters.
    """

    def __init__(
        self, *, input_shape: tuple[int, ...], num_classes: int, config: MLPConfig = MLPConfig()
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="mlp")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_batch(x, self.input_shape, model="mlp")
        return ModelOutput(logits=self.net(x))


@register_model("mlp")
def build_mlp(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> MLP:
    """Registry builder: ``kwargs`` override :class:`MLPConfig` fields."""
    config = override_config(MLPConfig.tiny() if tiny else MLPConfig(), kwargs, model="mlp")
    return MLP(input_shape=input_shape, num_classes=num_classes, config=config)
