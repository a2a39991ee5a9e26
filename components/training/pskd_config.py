"""Settings of self-distillation (``train.self_distill``) and of PS-KD (``train.pskd``)."""

from __future__ import annotations

from dataclasses import dataclass

from components.training.settings_block import SettingsBlock

SELF_DISTILL = ("none", "pskd", "iterative")  # iterative: components.training.self_distill_rounds


@dataclass(frozen=True)
class PSKDConfig(SettingsBlock):
    """PS-KD (Kim et al., ICCV 2021): how far the targets move towards the model's own
    predictions of the previous epoch (:mod:`components.training.pskd`).

    Attributes:
        alpha_T: the weight of the previous predictions at the last epoch; it grows linearly,
            ``alpha_t = alpha_T * t / T`` (the paper's default 0.8).
    """

    block = "pskd"
    alpha_T: float = 0.8  # noqa: N815 (the paper's name, and the override train.pskd.alpha_T)

    def __post_init__(self) -> None:
        weight = not isinstance(self.alpha_T, bool) and 0.0 <= float(self.alpha_T) <= 1.0
        self.check({"alpha_T": weight}, " (a weight in [0, 1])")
        object.__setattr__(self, "alpha_T", float(self.alpha_T))
