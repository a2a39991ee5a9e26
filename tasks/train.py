"""Prefect task: train a model with Ray Train."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.progress import notify_epoch


@task(name="train", cache_policy=NO_CACHE)
def train_task(dataset_path: Path, spec, cfg, run_dir: Path, run):
    """Start or join Ray (``run`` holds the address), train, and return the ``TrainOutcome``."""
    from components.training.ray_runtime import ensure_ray
    from components.training.ray_trainer import train_with_ray

    logger = get_run_logger()
    ensure_ray(run.ray_address, run.ray_num_cpus)

    def on_epoch(metrics: dict) -> None:
        accuracy = metrics.get("val_accuracy")
        logger.info(
            "epoch %d/%d [%s] train_loss=%.4f val_loss=%.4f%s",
            metrics["epoch"],
            cfg.epochs,
            metrics["stage"],
            metrics["train_loss"],
            metrics["val_loss"],
            "" if accuracy is None else f" val_accuracy={accuracy:.4f}",
        )
        notify_epoch(metrics)

    outcome = train_with_ray(
        dataset_path=dataset_path,
        spec=spec,
        cfg=cfg,
        run_dir=run_dir,
        on_epoch=on_epoch,
        storage_path=run.ray_storage_path,
    )
    logger.info(
        "best epoch %d (val_loss %.4f), %d epochs run%s",
        outcome.best_epoch,
        outcome.best_val_loss,
        len(outcome.history),
        ", stopped early" if outcome.stopped_early else "",
    )
    return outcome
