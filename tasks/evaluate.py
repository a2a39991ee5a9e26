"""Prefect task: evaluate the best checkpoint on the test split."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(checkpoint: Path, dataset_path: Path, seed: int = 0) -> dict:
    """Headline metrics on the test split plus every analysis the model supports
    (:func:`components.evaluation.stage.evaluate_checkpoint`), logged to the run."""
    from components.evaluation.stage import evaluate_checkpoint

    logger = get_run_logger()
    return evaluate_checkpoint(checkpoint, dataset_path, seed=seed, log=logger.info)
