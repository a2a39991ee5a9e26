"""Prefect task: a trained checkpoint's predictions on inputs it has not seen."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="predict", cache_policy=NO_CACHE)
def predict_task(checkpoint: Path, dataset_path: Path, input_path: str, cfg, seed: int = 0):
    """:func:`components.predict.stage.predict_checkpoint`, logged to the run; each batch is
    a step event (the CLI's progress bar)."""
    from components.predict.stage import predict_checkpoint
    from tasks.progress import notify_step

    return predict_checkpoint(
        checkpoint,
        dataset_path,
        input_path,
        cfg,
        seed=seed,
        log=get_run_logger().info,
        on_batch=lambda done, total: notify_step({"label": "inputs", "total": total, "done": done}),
    )
