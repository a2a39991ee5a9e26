"""Prefect task: train a model with Ray Train."""

from __future__ import annotations

import functools
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.progress import notify_epoch


@task(name="train", cache_policy=NO_CACHE)
def train_task(dataset_path: Path, spec, cfg, run_dir: Path, run, augment: str = "none"):
    """Start or join Ray (``run`` holds the address), train with
    :func:`components.training.ray_trainer.train_with_ray` (``train.self_distill=iterative``:
    its rounds, :mod:`components.training.self_distill_ray`), and return the ``TrainOutcome``.

    ``augment`` is the training augmentation of image datasets (``data.augment``). Every epoch is
    a progress event carrying ``epochs``, the bar's total: ``cfg.epochs``, or the
    ``epochs_planned`` an epoch reports when its regime runs more (a boosted final layer's
    steps)."""
    from components.data.staging import dataset_for_workers
    from components.training.ray_runtime import ensure_ray
    from components.training.ray_trainer import train_with_ray

    ensure_ray(run.ray_address, run.ray_num_cpus)
    if cfg.class_weights == "balanced":
        _log_class_weights(Path(dataset_path))
    train = train_with_ray
    if cfg.self_distill == "iterative":  # rounds of fits, each one like the call below
        from components.training.self_distill_ray import train_rounds_with_ray

        train = functools.partial(train_rounds_with_ray, local_dataset=Path(dataset_path))
    return train(
        dataset_path=dataset_for_workers(dataset_path, run.ray_storage_path),
        spec=spec,
        cfg=cfg,
        run_dir=run_dir,
        on_epoch=lambda metrics: notify_epoch(
            {**metrics, "epochs": metrics.get("epochs_planned", cfg.epochs)}
        ),
        storage_path=run_storage(run.ray_storage_path, Path(run_dir)),
        augment=augment,
        logger=get_run_logger(),
    )


def _log_class_weights(dataset_path: Path) -> None:
    """Log the weights ``train.class_weights=balanced`` gives each class of the training split."""
    import numpy as np

    from components.data.reader import load_meta, read_labels
    from components.training.class_weights import weights_line

    meta = load_meta(dataset_path)
    counts = np.bincount(read_labels(dataset_path, "train"), minlength=meta.num_classes)
    get_run_logger().info("class weights (balanced): %s", weights_line(counts, meta.class_names))


def run_storage(storage_path: str | None, run_dir: Path) -> str | None:
    """This run's own folder under ``ray.storage_path`` (``<storage>/<flow>/<run id>``): runs
    sharing a storage path must not resume each other's checkpoints."""
    from components.data.staging import join

    return join(storage_path, run_dir.parent.name, run_dir.name) if storage_path else None
