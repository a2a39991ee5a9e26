"""Settings of the gradient-boosted final layer (``train.final_layer=boosted``, ``train.boost``)."""

from __future__ import annotations

from dataclasses import dataclass

from components.training.settings_block import SettingsBlock

FINAL_LAYERS = ("standard", "boosted")


@dataclass(frozen=True)
class BoostConfig(SettingsBlock):
    """How :func:`components.training.boosted.boosted_fit` grows the last hidden layer.

    The number of boosting steps ``T`` is the model's last hidden width divided by ``units``, so
    the final network keeps the width the model config names (``T * J`` hidden units).

    Attributes:
        units: hidden units ``J`` trained per boosting step.
        epochs: epochs of gradient steps that fit each step's units to the pseudo-residuals.
        shrinkage: the learning rate ``eta`` of gradient boosting, multiplying each step's
            line-searched (Newton) step length.
    """

    block = "boost"
    units: int = 8
    epochs: int = 10
    shrinkage: float = 1.0

    def __post_init__(self) -> None:
        self.check(
            {
                "units": isinstance(self.units, int) and self.units >= 1,
                "epochs": isinstance(self.epochs, int) and self.epochs >= 1,
                "shrinkage": 0 < self.shrinkage <= 1,
            },
            " (units and epochs: ints >= 1; shrinkage: in (0, 1])",
        )
