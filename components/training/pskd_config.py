"""Settings of self-distillation (``train.self_distill``) and of PS-KD (``train.pskd``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

SELF_DISTILL = ("none", "pskd", "iterative")  # iterative: components.training.self_distill_rounds


@dataclass(frozen=True)
class PSKDConfig:
    """PS-KD (Kim et al., ICCV 2021): how far the targets move towards the model's own
    predictions of the previous epoch (:mod:`components.training.pskd`).

    Attributes:
        alpha_T: the weight of the previous predictions at the last epoch; it grows linearly,
            ``alpha_t = alpha_T * t / T`` (the paper's default 0.8).
    """

    alpha_T: float = 0.8  # noqa: N815 (the paper's name, and the override train.pskd.alpha_T)

    def __post_init__(self) -> None:
        if isinstance(self.alpha_T, bool) or not 0.0 <= float(self.alpha_T) <= 1.0:
            raise ValueError(
                f"invalid training config: train.pskd.alpha_T={self.alpha_T!r} (a weight in [0, 1])"
            )
        object.__setattr__(self, "alpha_T", float(self.alpha_T))

    @classmethod
    def from_value(cls, value: PSKDConfig | Mapping) -> PSKDConfig:
        """``value`` as a :class:`PSKDConfig` (Hydra hands a mapping over).

        Raises:
            ValueError: naming the unknown ``train.pskd`` keys and the valid ones.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(
                f"invalid training config: train.pskd must be a mapping, got {value!r}"
            )
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(valid))
        if unknown:
            names = ", ".join(f"train.pskd.{key}" for key in unknown)
            raise ValueError(f"invalid training config: unknown key(s) {names}; valid: {valid}")
        return cls(**value)
