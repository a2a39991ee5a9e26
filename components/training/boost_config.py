"""Settings of the gradient-boosted final layer (``train.final_layer=boosted``, ``train.boost``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

FINAL_LAYERS = ("standard", "boosted")


@dataclass(frozen=True)
class BoostConfig:
    """How :func:`components.training.boosted.boosted_fit` grows the last hidden layer.

    The number of boosting steps ``T`` is the model's last hidden width divided by ``units``, so
    the final network keeps the width the model config names (``T * J`` hidden units).

    Attributes:
        units: hidden units ``J`` trained per boosting step.
        epochs: epochs of gradient steps that fit each step's units to the pseudo-residuals.
        shrinkage: the learning rate ``eta`` of gradient boosting, multiplying each step's
            line-searched (Newton) step length.
    """

    units: int = 8
    epochs: int = 10
    shrinkage: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "units": isinstance(self.units, int) and self.units >= 1,
            "epochs": isinstance(self.epochs, int) and self.epochs >= 1,
            "shrinkage": 0 < self.shrinkage <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"train.boost.{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(
                f"invalid training config: {values} (units and epochs: ints >= 1; "
                "shrinkage: in (0, 1])"
            )

    @classmethod
    def from_value(cls, value: BoostConfig | Mapping) -> BoostConfig:
        """``value`` as a :class:`BoostConfig` (Hydra hands a mapping over).

        Raises:
            ValueError: naming the unknown ``train.boost`` keys and the valid ones.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(
                f"invalid training config: train.boost must be a mapping, got {value!r}"
            )
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(valid))
        if unknown:
            names = ", ".join(f"train.boost.{key}" for key in unknown)
            raise ValueError(f"invalid training config: unknown key(s) {names}; valid: {valid}")
        return cls(**value)
