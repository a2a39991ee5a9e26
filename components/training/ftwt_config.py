"""Settings of the FTWT dynamic-pruning stage (``train.ftwt``; see
:mod:`components.pruning.ftwt`)."""

from __future__ import annotations

from dataclasses import dataclass

from components.training.settings_block import SettingsBlock

DYNAMIC_PRUNING = ("none", "ftwt")


@dataclass(frozen=True)
class FtwtConfig(SettingsBlock):
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

    block = "ftwt"
    mass: float = 0.9
    epochs: int = 10
    lr: float = 0.1
    finetune_epochs: int = 3
    finetune_lr: float = 1e-4

    def __post_init__(self) -> None:
        self.check(
            {
                "mass": 0 < self.mass <= 1,
                "epochs": self.epochs >= 1,
                "lr": self.lr > 0,
                "finetune_epochs": self.finetune_epochs >= 0,
                "finetune_lr": self.finetune_lr > 0,
            }
        )
