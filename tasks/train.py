"""Prefect task: train a model with Ray Train."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.progress import notify_epoch


@task(name="train", cache_policy=NO_CACHE)
def train_task(dataset_path: Path, spec, cfg, run_dir: Path, run, augment: str = "none"):
    """Start or join Ray (``run`` holds the address), train, and return the ``TrainOutcome``.

    ``augment`` is the training augmentation of image datasets (``data.augment``)."""
    from components.data.staging import dataset_for_workers
    from components.training.ray_runtime import ensure_ray
    from components.training.ray_trainer import train_with_ray

    logger = get_run_logger()
    ensure_ray(run.ray_address, run.ray_num_cpus)
    attempt = [1]

    def on_epoch(metrics: dict) -> None:
        if metrics["attempt"] > attempt[0]:
            attempt[0] = metrics["attempt"]
            logger.warning(
                "worker group restarted (attempt %d): recovered from the checkpoint of epoch %d; "
                "workers on nodes %s",
                attempt[0],
                metrics["epoch"] - 1,
                ", ".join(node[:8] for node in metrics["worker_nodes"]),
            )
        accuracy = metrics.get("val_accuracy")
        logger.info(
            "epoch %d/%d [%s] train_loss=%.4f val_loss=%.4f%s (%.0f samples/s per worker)",
            metrics["epoch"],
            cfg.epochs,
            metrics["stage"],
            metrics["train_loss"],
            metrics["val_loss"],
            "" if accuracy is None else f" val_accuracy={accuracy:.4f}",
            metrics["samples_per_s"],
        )
        notify_epoch(metrics)

    outcome = train_with_ray(
        dataset_path=dataset_for_workers(dataset_path, run.ray_storage_path),
        spec=spec,
        cfg=cfg,
        run_dir=run_dir,
        on_epoch=on_epoch,
        storage_path=run_storage(run.ray_storage_path, Path(run_dir)),
        augment=augment,
    )
    logger.info(
        "best epoch %d (val_loss %.4f), %d epochs run%s%s",
        outcome.best_epoch,
        outcome.best_val_loss,
        len(outcome.history),
        ", stopped early" if outcome.stopped_early else "",
        _recovery_note(outcome.resumed_at),
    )
    return outcome


def run_storage(storage_path: str | None, run_dir: Path) -> str | None:
    """This run's own folder under ``ray.storage_path`` (``<storage>/<flow>/<run id>``): runs
    sharing a storage path must not resume each other's checkpoints."""
    from components.data.staging import join

    return join(storage_path, run_dir.parent.name, run_dir.name) if storage_path else None


def _recovery_note(resumed_at: list[int]) -> str:
    if not resumed_at:
        return ""
    epochs = ", ".join(str(epoch) for epoch in resumed_at)
    return f", resumed from a checkpoint {len(resumed_at)} time(s) (after epoch {epochs})"
