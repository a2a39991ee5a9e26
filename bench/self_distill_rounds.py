"""Iterative self-distillation on digits: the estimated ground-truth weight vs fixed weights.

Borup & Andersen 2021 claim that weighting the ground truth in every distillation step helps,
and that their estimate of the optimal weight stands in for a grid search. Per seed, this runs
rounds 0..K with ``xi_k`` estimated (each round costs two fits: the round and its teacher-only
probe) and, at the same number of rounds, fixed weights ``xi`` from a small grid, all in-process
with the pure fit loop (the tiny MLP, the same seeded initialisation every round). It prints
test accuracy per round with the mean and standard deviation over seeds.

    nice -n 10 .venv/bin/python bench/self_distill_rounds.py --seeds 0 1 2 --epochs 20 --rounds 2
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from components.data.ingest import ingest
from components.data.reader import iter_batches
from components.data.spec import DataSpec
from components.training.checkpoint import ModelSpec, load_model
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.self_distill_rounds import (
    Teacher,
    checkpoint_val_probs,
    load_teacher_targets,
    train_rounds,
)
from components.training.worker_data import worker_batches

SPEC = ModelSpec(name="mlp", input_shape=(1, 8, 8), num_classes=10, tiny=True)


def round_trainer(dataset: Path, cfg: TrainConfig, root: Path):
    """``train_round`` for :func:`train_rounds`: one in-process fit, its best checkpoint kept."""

    def train_round(name: str, teacher: Teacher | None):
        train, val = worker_batches(dataset, cfg)
        targets = None if teacher is None else load_teacher_targets(teacher, torch.device("cpu"))
        best, score = root / name / "best", [math.inf]

        def report(metrics: dict, folder: Path | None) -> None:
            if metrics["checkpoint_score"] < score[0]:
                score[0] = metrics["checkpoint_score"]
                shutil.rmtree(best, ignore_errors=True)
                shutil.copytree(folder, best)

        torch.manual_seed(cfg.seed)
        state = fit(SPEC.build(), train, val, cfg=cfg, spec=SPEC, report=report, targets=targets)
        return SimpleNamespace(
            best_checkpoint=best,
            best_epoch=state.best_epoch,
            best_val_loss=state.best_val_loss,
            history=state.history,
        )

    return train_round


def test_accuracy(checkpoint: Path, dataset: Path) -> float:
    model, _ = load_model(checkpoint)
    correct = total = 0
    with torch.no_grad():
        for x, y in iter_batches(dataset, "test", 512):
            correct += int((model(x).logits.argmax(1) == y).sum())
            total += len(y)
    return correct / total


def fixed_rounds(train_round, rounds: int, xi: float, root: Path) -> list[Path]:
    """Round 0, then ``rounds`` rounds at the fixed weight ``xi``: each round's checkpoint."""
    checkpoints = [train_round("fixed_round_0", None).best_checkpoint]
    for k in range(1, rounds + 1):
        teacher = Teacher(str(checkpoints[-1]), xi)
        checkpoints.append(train_round(f"fixed_{xi}_round_{k}", teacher).best_checkpoint)
    return checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--grid", type=float, nargs="+", default=[0.0, 0.5])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Path(tempfile.mkdtemp(prefix="sd-bench-"))
    dataset = ingest(DataSpec(source="digits"), cache / "cache").path
    results: dict[str, list[list[float]]] = {}
    xis: list[list[float]] = []
    for seed in args.seeds:
        cfg = TrainConfig(
            epochs=args.epochs, lr=0.01, batch_size=64, early_stopping_patience=0, seed=seed
        )
        root = cache / f"seed{seed}"
        train_round = round_trainer(dataset, cfg, root)
        _, rows = train_rounds(args.rounds, train_round, lambda c: checkpoint_val_probs(c, dataset))
        xis.append([row["xi_unclipped"] for row in rows[1:]])
        estimated = [
            root / ("round_0" if k == 0 else f"round_{k}") / "best" for k in range(len(rows))
        ]
        results.setdefault("estimated xi_k", []).append(
            [test_accuracy(c, dataset) for c in estimated]
        )
        for xi in args.grid:
            checkpoints = fixed_rounds(train_round, args.rounds, xi, root)
            results.setdefault(f"fixed xi={xi}", []).append(
                [test_accuracy(c, dataset) for c in checkpoints]
            )
        print(f"seed {seed} done: xi_k unclipped {np.round(xis[-1], 3).tolist()}", flush=True)
    header = " | ".join(f"round {k}" for k in range(args.rounds + 1))
    print(f"\ntest accuracy, mean ± std over seeds {args.seeds} ({args.epochs} epochs per fit)")
    print(f"{'regime':<18} | {header}")
    for name, table in results.items():
        acc = np.asarray(table)
        cells = " | ".join(
            f"{m:.4f} ± {s:.4f}" for m, s in zip(acc.mean(0), acc.std(0), strict=True)
        )
        print(f"{name:<18} | {cells}")
    est = np.asarray(xis)
    print(
        "estimated xi_k (unclipped), mean ± std:",
        [f"{m:.3f} ± {s:.3f}" for m, s in zip(est.mean(0), est.std(0), strict=True)],
    )
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
