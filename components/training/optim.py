"""Optimisers and learning-rate schedules, built per training stage."""

from __future__ import annotations

import math

import torch
from torch import nn

from components.models.base import TrainingStage
from components.training.config import TrainConfig


def stage_param_groups(model: nn.Module, stage: TrainingStage, base_lr: float) -> list[dict]:
    """Parameter groups of ``stage``: ``trainable`` prefixes with their LR multipliers.

    Raises:
        ValueError: if a prefix matches no parameter (a typo would silently freeze the model).
    """
    named = list(getattr(model, "module", model).named_parameters())  # DDP: the user's names
    if stage.trainable is None:
        return [{"params": [p for _, p in named], "lr": base_lr}]
    groups = []
    for prefix, scale in stage.trainable.items():
        params = [p for name, p in named if name.startswith(prefix)]
        if not params:
            raise ValueError(f"training stage {stage.name!r}: no parameter starts with {prefix!r}")
        groups.append({"params": params, "lr": base_lr * scale})
    return groups


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, stage: TrainingStage | None = None
) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer`` over the parameters ``stage`` trains."""
    stage = stage or TrainingStage("train", cfg.epochs)
    groups = stage_param_groups(model, stage, cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(schedule: str, epoch: int, total: int) -> float:
    """The LR multiplier at ``epoch`` of ``total`` in closed form.

    Closed form (not the recursive ``CosineAnnealingLR``) so a run resumed with a different
    ``epochs`` follows the new schedule exactly from where it is.
    """
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))
    if schedule == "step":
        milestones = (total // 2, (3 * total) // 4)
        return 0.1 ** sum(epoch >= m for m in milestones if m > 0)
    return 1.0


def build_scheduler(opt: torch.optim.Optimizer, schedule: str, total: int):
    """A per-epoch LR schedule over a stage of ``total`` epochs."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(schedule, epoch, total))
