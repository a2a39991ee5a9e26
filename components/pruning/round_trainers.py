"""The two ways a lottery round is trained: one Ray Train fit (the flow), or the same fit loop
in-process on arrays (tests and ``bench/lottery.py``, where Ray's start-up would dominate)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from ray.train import UserCallback
from safetensors.torch import load_file

from components import atomic
from components.data.reader import read_split
from components.data.staging import join, local_dataset
from components.evaluation.predict import predict_logits
from components.pruning.imp_masks import SparseStart
from components.pruning.lottery import RoundFit, TrainRound
from components.training.batches import ShardBatches
from components.training.checkpoint import WEIGHTS, ModelSpec, load_model
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.ray_trainer import TrainOutcome, saved_outcome, train_with_ray

Split = tuple[np.ndarray, np.ndarray]


def accuracy_on(model: torch.nn.Module, x, y) -> float:
    """Accuracy of ``model`` on ``(x, y)``."""
    logits = predict_logits(model, x)
    return float((logits.argmax(1) == torch.as_tensor(y)).float().mean())


def in_process_rounds(
    spec: ModelSpec, cfg: TrainConfig, train: Split, val: Split, test: Split
) -> TrainRound:
    """A :data:`~components.pruning.lottery.TrainRound` that runs :func:`fit` in this process on
    arrays, scoring each round's ticket on ``test``."""
    batches = ShardBatches(*train, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    val_batches = ShardBatches(*val, batch_size=256, shuffle=False)
    return batch_rounds(spec, cfg, batches, val_batches, test=test)


def batch_rounds(
    spec: ModelSpec,
    cfg: TrainConfig,
    train,
    val,
    *,
    test: Split | None = None,
    device: torch.device | str = "cpu",
) -> TrainRound:
    """A :data:`~components.pruning.lottery.TrainRound` that runs :func:`fit` in this process on
    batches (:class:`ShardBatches`, or an image dataset's loaders as a sweep trial reads them),
    on ``device``; a round's ``test_accuracy`` is None without a ``test`` split."""

    def train_round(tag: str, start: SparseStart, capture_epoch: int | None) -> RoundFit:
        torch.manual_seed(cfg.seed)
        model = spec.build(load_pretrained=False)
        start(model, True)
        model.to(device)
        kept: dict = {"score": math.inf}

        def report(metrics: dict, folder: Path | None) -> None:
            if metrics["checkpoint_score"] < kept["score"]:
                best = load_file(folder / WEIGHTS)
                kept.update(score=metrics["checkpoint_score"], best=best, metrics=metrics)
            if metrics["epoch"] == capture_epoch:
                kept["rewind"] = load_file(folder / WEIGHTS)

        state = fit(model, train, val, cfg=cfg, spec=spec, report=report, device=device)
        model.load_state_dict(kept["best"])
        return RoundFit(
            weights=kept["best"],
            test_accuracy=None if test is None else accuracy_on(model.cpu(), *test),
            best_epoch=state.best_epoch,
            epochs_run=len(state.history),
            rewind=kept.get("rewind"),
            val_loss=kept["metrics"]["val_loss"],
            val_accuracy=kept["metrics"].get("val_accuracy"),
        )

    return train_round


class RewindCapture(UserCallback):
    """Ray Train callback (in the controller) that copies epoch ``epoch``'s checkpoint to
    ``dest``: the weights a later round rewinds to. Ray never deletes the latest checkpoint,
    so the one just reported is still there."""

    def __init__(self, epoch: int, dest: Path) -> None:
        self.epoch, self.dest = epoch, str(dest)

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if checkpoint is not None and metrics[0]["epoch"] == self.epoch:
            with checkpoint.as_directory() as folder:
                atomic.copy_tree(folder, self.dest)


def ray_rounds(
    dataset_path: Path | str,
    spec: ModelSpec,
    cfg: TrainConfig,
    folder: Path,
    *,
    storage_path: str | None = None,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
) -> TrainRound:
    """A :data:`~components.pruning.lottery.TrainRound` that trains each round with Ray Train
    (:func:`train_with_ray`) into ``folder/<tag>`` (its ``checkpoints/best`` and ``last``);
    Ray must be initialised. ``storage_path``: where Ray keeps the rounds' checkpoints
    (a round's own folder under it; default ``folder/<tag>/ray``)."""
    test = read_split(local_dataset(dataset_path), "test")

    def train_round(tag: str, start: SparseStart, capture_epoch: int | None) -> RoundFit:
        run_dir = Path(folder) / tag
        rewind_dir = run_dir / "rewind"
        callbacks = [RewindCapture(capture_epoch, rewind_dir)] if capture_epoch else []
        outcome = train_with_ray(
            dataset_path=dataset_path,
            spec=spec,
            cfg=cfg,
            run_dir=run_dir,
            storage_path=join(storage_path, tag) if storage_path else None,
            callbacks=callbacks,
            model_setup=start,
            **({"logger": logger} if logger is not None else {}),
        )
        model, _ = load_model(outcome.best_checkpoint)
        rewind = rewind_dir / WEIGHTS
        best = next(row for row in outcome.history if row["epoch"] == outcome.best_epoch)
        return RoundFit(
            weights=load_file(outcome.best_checkpoint / WEIGHTS),
            test_accuracy=accuracy_on(model, *test),
            best_epoch=outcome.best_epoch,
            epochs_run=len(outcome.history),
            rewind=load_file(rewind) if rewind.is_file() else None,
            val_loss=outcome.best_val_loss,
            val_accuracy=best.get("val_accuracy"),
        )

    return train_round


def ticket_outcome(folder: Path | str, index: int) -> TrainOutcome:
    """The Ray Train outcome of round ``index``'s ticket, from the checkpoints :func:`ray_rounds`
    left in ``folder`` (``round-<index>/ticket/checkpoints/best`` and ``last``)."""
    checkpoints = Path(folder) / f"round-{index}" / "ticket" / "checkpoints"
    return saved_outcome(checkpoints / "best", checkpoints / "last")
