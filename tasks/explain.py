"""Prefect task: explain the best checkpoint's predictions on test samples."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="explain", cache_policy=NO_CACHE)
def explain_task(
    checkpoint: Path,
    dataset_path: Path,
    cfg,
    seed: int = 0,
    run=None,
    train_seconds: float | None = None,
) -> dict:
    """:func:`components.explain.stage.explain_checkpoint` of ``checkpoint`` within
    ``cfg.budget_s``, logged to the run; ``run`` (the run settings) says which Ray to join when
    ``cfg.num_tasks > 1``."""
    from components.explain.stage import explain_checkpoint

    return explain_checkpoint(
        checkpoint,
        dataset_path,
        cfg,
        seed=seed,
        train_seconds=train_seconds,
        ray_address=run.ray_address if run else None,
        ray_num_cpus=run.ray_num_cpus if run else None,
        log=get_run_logger().info,
    )
