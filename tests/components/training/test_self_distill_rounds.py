"""Iterative self-distillation rounds in-process: round k trains against the mixed targets of
round k-1's frozen network with the estimated ground-truth weight."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from components.training.checkpoint import ModelSpec, load_model
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.self_distill_rounds import (
    Teacher,
    checkpoint_val_probs,
    load_teacher_targets,
    mixed_targets,
    train_rounds,
)
from components.training.worker_data import worker_batches

SPEC = ModelSpec(name="mlp", input_shape=(1, 8, 8), num_classes=10, tiny=True)
CFG = TrainConfig(epochs=3, lr=0.03, batch_size=64, early_stopping_patience=0)


def in_process_round(dataset: Path, root: Path, seen: dict):
    """A ``train_round`` that fits in this process and keeps each fit's best checkpoint; it
    records the teacher and the targets of each fit's first training batch in ``seen``."""

    def train_round(name: str, teacher: Teacher | None):
        train, val = worker_batches(dataset, CFG)
        targets = None
        if teacher is not None:
            mixed = load_teacher_targets(teacher, torch.device("cpu"))

            def targets(x, y):
                out = mixed(x, y)
                seen.setdefault(name, (teacher, x.clone(), y.clone(), out))
                return out

        best = root / name / "best"
        scores = [math.inf]

        def report(metrics: dict, folder: Path | None) -> None:
            if metrics["checkpoint_score"] < scores[0]:
                scores[0] = metrics["checkpoint_score"]
                shutil.rmtree(best, ignore_errors=True)
                shutil.copytree(folder, best)

        torch.manual_seed(CFG.seed)
        state = fit(SPEC.build(), train, val, cfg=CFG, spec=SPEC, report=report, targets=targets)
        return SimpleNamespace(
            best_checkpoint=best,
            best_epoch=state.best_epoch,
            best_val_loss=state.best_val_loss,
            history=state.history,
        )

    return train_round


def test_two_rounds_train_against_the_estimated_mixture(digits_dataset, tmp_path):
    seen: dict = {}
    train_round = in_process_round(digits_dataset, tmp_path, seen)
    outcome, rows = train_rounds(2, train_round, lambda c: checkpoint_val_probs(c, digits_dataset))

    assert [row["round"] for row in rows] == [0, 1, 2]
    assert outcome.best_checkpoint == tmp_path / "round_2" / "best"  # the run's model
    assert set(seen) == {"round_1_teacher_only", "round_1", "round_2_teacher_only", "round_2"}
    labels_only, y_val = checkpoint_val_probs(tmp_path / "round_0" / "best", digits_dataset)
    onehot = np.eye(10)[y_val]
    for k in (1, 2):
        # The estimate: least squares of the one-hot val labels on the line between the
        # labels-only student (round 0) and the teacher-only probe of round k.
        probe, _ = checkpoint_val_probs(
            tmp_path / f"round_{k}_teacher_only" / "best", digits_dataset
        )
        direction = (labels_only - probe).reshape(-1, 1)
        raw = np.linalg.lstsq(direction, (onehot - probe).ravel(), rcond=None)[0][0]
        assert rows[k]["xi_unclipped"] == pytest.approx(raw, rel=1e-5)
        assert rows[k]["xi"] == pytest.approx(min(max(raw, 0.0), 1.0))
        assert seen[f"round_{k}_teacher_only"][0].xi == 0.0

    probe_teacher, x, y, targets = seen["round_2_teacher_only"]  # xi = 0: the teacher alone
    round_1, _ = load_model(tmp_path / "round_1" / "best")
    assert probe_teacher.checkpoint == str(tmp_path / "round_1" / "best")
    with torch.no_grad():
        torch.testing.assert_close(targets, torch.softmax(round_1(x).logits, 1))
    teacher, x, y, targets = seen["round_2"]
    assert teacher.checkpoint == str(tmp_path / "round_1" / "best")
    assert teacher.xi == rows[2]["xi"]
    with torch.no_grad():
        expected = mixed_targets(round_1(x).logits, y, rows[2]["xi"])
    torch.testing.assert_close(targets, expected)
    # The student's loss really is the cross-entropy against that distribution.
    student, _ = load_model(outcome.best_checkpoint)
    with student.soft_targets(targets):
        ce = student.loss(student(x), x, y)["ce"]
    log_p = torch.log_softmax(student(x).logits, dim=1)
    torch.testing.assert_close(ce, -(expected * log_p).sum(1).mean())
    assert rows[2]["val_accuracy"] > 0.9  # 3 epochs of the tiny MLP on digits


def test_mixed_targets_closed_form():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    targets = mixed_targets(logits, torch.tensor([0, 0]), xi=0.5)
    torch.testing.assert_close(targets, torch.tensor([[0.625, 0.375], [0.9, 0.1]]))


def test_bad_rounds_and_weights_are_refused():
    with pytest.raises(ValueError, match=r"self_distill_rounds must be >= 1"):
        train_rounds(0, None, None)
    with pytest.raises(ValueError, match=r"xi must lie in \[0, 1\]"):
        Teacher("ckpt", 1.5)


def test_configs_that_cannot_self_distil_in_rounds_are_refused():
    from components.models import SoftTargetsError
    from components.training.self_distill_ray import check_iterative

    with pytest.raises(ValueError, match=r"train.self_distill_rounds=0"):
        TrainConfig(self_distill="iterative", self_distill_rounds=0)
    with pytest.raises(ValueError, match=r"needs train.final_layer=standard"):
        check_iterative(SPEC, TrainConfig(self_distill="iterative", final_layer="boosted"))
    with pytest.raises(SoftTargetsError, match="unsupervised"):
        check_iterative(ModelSpec("tell", (1, 8, 8), 10, tiny=True), CFG)
