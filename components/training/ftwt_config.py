"""Settings of the FTWT dynamic-pruning stage (``train.ftwt``; see
:mod:`components.pruning.ftwt`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

DYNAMIC_PRUNING = ("none", "ftwt")


@dataclass(frozen=True)
class FtwtConfig:
    """How FTWT's mask predictors are trained after ordinary training.

    Attributes:
        mass: heatmap mass the per-input top-k keeps, in ``(0, 1]`` (the paper's threshold
            ``r``: lower keeps fewer filters).
        epochs: epochs training the predictors alone (backbone frozen).
        lr: predictors' SGD learning rate (momentum 0.9; the reference's ``mlr``).
        finetune_epochs: epochs then fine-tuning the backbone on the task loss under the
            predicted masks, predictors frozen (the reference's cool-down phase); 0: none.
        finetune_lr: the fine-tuning Adam learning rate.
    """

    mass: float = 0.9
    epochs: int = 10
    lr: float = 0.1
    finetune_epochs: int = 3
    finetune_lr: float = 1e-4

    def __post_init__(self) -> None:
        checks = {
            "mass": 0 < self.mass <= 1,
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "finetune_epochs": self.finetune_epochs >= 0,
            "finetune_lr": self.finetune_lr > 0,
        }
        if bad := [name for name, ok in checks.items() if not ok]:
            values = ", ".join(f"train.ftwt.{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid training config: {values}")

    @classmethod
    def from_value(cls, value) -> FtwtConfig:
        """``value`` as a config: itself, or a mapping of its fields (from Hydra)."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(
                f"invalid training config: train.ftwt must be a mapping, got {value!r}"
            )
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(value) - known):
            raise ValueError(
                f"invalid training config: unknown train.ftwt key(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**value)
