"""Iterative self-distillation with ground-truth targets: ``train.self_distill=iterative``.

Borup & Andersen, "Even your Teacher Needs Guidance: Ground-Truth Targets Dampen Regularization
Imposed by Self-Distillation" (NeurIPS 2021; reference code github.com/Kennethborup/
self_distillation, ``self_distiller.py``). Round 0 trains on the labels. Round ``k`` trains a
fresh network of the same architecture against

    xi_k * onehot(y) + (1 - xi_k) * softmax(teacher(x))

where the teacher is round ``k - 1``'s best network, frozen and evaluated on the same batch (no
per-sample table), and ``xi_k`` is the paper's estimate of the optimal ground-truth weight: the
student's predictions are (in the kernel setting exactly) affine in ``xi``, so ``xi_k`` is the
projection of the held-out one-hot labels onto the line between the validation predictions of
a student trained on the labels alone (round 0's network) and one trained on the teacher alone
(:func:`~components.training.self_distill_theory.projection_weight`). Each round therefore costs
two fits (the teacher-only probe and the round itself) instead of a grid of fits. The last
round's network is the run's model.

Departures: the students train with the models' cross-entropy against the mixed distribution
(the shared soft-target mechanism every model's CE term uses), not the reference code's MSE on
softmax outputs, so every sennflow model trains the same way; ``xi_k`` is clipped to ``[0, 1]``
(the paper's range) and its unclipped value is reported beside it; the estimate reads the
validation split, which also picks each round's best epoch (the paper holds out data too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from components.training.self_distill_theory import projection_weight


@dataclass(frozen=True)
class Teacher:
    """The frozen network a round distils from, and the ground-truth weight of its targets.

    Attributes:
        checkpoint: the teacher's checkpoint folder (the previous round's best).
        xi: the weight of the one-hot labels in the targets (``1 - xi`` on the teacher).
    """

    checkpoint: str
    xi: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.xi <= 1.0:
            raise ValueError(f"the ground-truth weight xi must lie in [0, 1], got {self.xi}")


def mixed_targets(teacher_logits: torch.Tensor, y: torch.Tensor, xi: float) -> torch.Tensor:
    """``xi * onehot(y) + (1 - xi) * softmax(teacher_logits)``, ``(N, C)`` float32."""
    probs = torch.softmax(teacher_logits.float(), dim=-1)
    onehot = nn.functional.one_hot(y, probs.shape[-1]).to(probs.dtype)
    return xi * onehot + (1.0 - xi) * probs


class TeacherTargets:
    """A batch's soft targets from a frozen teacher: ``targets(x, y) -> (N, C)``.

    Args:
        teacher: the teacher network (put in eval mode, its parameters frozen).
        xi: the ground-truth weight.
    """

    def __init__(self, teacher: nn.Module, xi: float) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.xi = xi

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mixed_targets(self.teacher(x).logits, y, self.xi)


def load_teacher_targets(teacher: Teacher, device: torch.device) -> TeacherTargets:
    """The worker side of a round: its frozen teacher network on ``device`` and its weight."""
    from components.training.checkpoint import load_model

    model, _ = load_model(teacher.checkpoint)
    return TeacherTargets(model.to(device), teacher.xi)


TrainRound = Callable[[str, "Teacher | None"], object]
"""``train_round(name, teacher) -> outcome``: one fit (``name`` is its sub-folder); the outcome
has ``best_checkpoint``, ``best_epoch``, ``best_val_loss`` and ``history``
(:class:`~components.training.ray_trainer.TrainOutcome`)."""


def train_rounds(
    rounds: int,
    train_round: TrainRound,
    val_predict: Callable[[Path], tuple[np.ndarray, np.ndarray]],
    on_round: Callable[[dict], None] = lambda row: None,
):
    """Round 0 on the labels, then ``rounds`` distillation rounds with the estimated ``xi_k``.

    Args:
        rounds: ``K``, the distillation rounds after round 0.
        train_round: trains one network (see :data:`TrainRound`).
        val_predict: a checkpoint's softmax predictions ``(N, C)`` on the validation split and
            the labels ``(N,)`` in the same order (:func:`checkpoint_val_probs`).
        on_round: called with each round's row as it finishes (logging).

    Returns:
        ``(outcome, rows)``: the last round's outcome (the run's model) and one row per round:
        ``round``, ``xi``, ``xi_unclipped``, ``val_accuracy``, ``val_loss``, ``epochs`` and, for
        ``k >= 1``, ``teacher_only_val_accuracy`` (the probe).
    """
    if rounds < 1:
        raise ValueError(f"train.self_distill_rounds must be >= 1, got {rounds}")
    outcome = train_round("round_0", None)
    rows = [_row(0, 1.0, 1.0, outcome)]
    on_round(rows[-1])
    labels_only, labels = val_predict(outcome.best_checkpoint)
    onehot = np.eye(labels_only.shape[1])[labels]
    for k in range(1, rounds + 1):
        teacher = Teacher(str(outcome.best_checkpoint), 0.0)
        probe = train_round(f"round_{k}_teacher_only", teacher)
        raw = projection_weight(onehot, val_predict(probe.best_checkpoint)[0], labels_only)
        xi = float(np.clip(raw, 0.0, 1.0))
        outcome = train_round(f"round_{k}", replace(teacher, xi=xi))
        rows.append({**_row(k, xi, raw, outcome), "teacher_only_val_accuracy": _best(probe)[0]})
        on_round(rows[-1])
    return outcome, rows


def _best(outcome) -> tuple[float | None, int]:
    """Validation accuracy at the outcome's best epoch, and the epochs it ran."""
    best = [m for m in outcome.history if m.get("epoch") == outcome.best_epoch]
    return (best[0].get("val_accuracy") if best else None), len(outcome.history)


def _row(k: int, xi: float, raw: float, outcome) -> dict:
    accuracy, epochs = _best(outcome)
    return {
        "round": k,
        "xi": xi,
        "xi_unclipped": raw,
        "val_accuracy": accuracy,
        "val_loss": outcome.best_val_loss,
        "epochs": epochs,
    }


def checkpoint_val_probs(checkpoint: Path, dataset_path: Path, batch_size: int = 512):
    """Softmax predictions of a checkpoint on the validation split, and the labels, in order."""
    from components.data.reader import iter_batches
    from components.training.checkpoint import load_model

    model, _ = load_model(checkpoint)  # in eval mode
    probs, labels = [], []
    with torch.no_grad():
        for x, y in iter_batches(dataset_path, "val", batch_size):
            probs.append(torch.softmax(model(x).logits.float(), dim=1))
            labels.append(y)
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()
