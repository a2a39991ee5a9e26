"""Prefect task: run continual learners (one Ray actor per method) through one stream."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.progress import notify_step


@task(name="continual", cache_policy=NO_CACHE)
def continual_task(dataset_path: Path, config, run) -> dict:
    """Start or join Ray, run every method's stream (and the federated one if asked) with
    :func:`components.continual.experiment.run_continual`, and return the report's
    ``continual`` dict.

    Every finished task is a progress step of its method, out of ``config.num_tasks``."""
    from components.continual.experiment import run_continual
    from components.training.ray_runtime import ensure_ray

    ensure_ray(run.ray_address, run.ray_num_cpus)

    def on_step(event: dict) -> None:
        notify_step({**event, "total": config.num_tasks})

    return run_continual(dataset_path, config, on_step, logger=get_run_logger())
