"""Prefect task: FTWT dynamic channel pruning of a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="ftwt", cache_policy=NO_CACHE)
def ftwt_task(checkpoint: Path, dataset_path: Path, cfg, run_dir: Path, seed: int = 0) -> dict:
    """Train FTWT's mask predictors for the model of ``checkpoint``
    (:func:`components.pruning.ftwt_stage.ftwt_checkpoint`), save the gated model under
    ``<run_dir>/ftwt`` and return the report section."""
    from components.pruning.ftwt_stage import ftwt_checkpoint

    section = ftwt_checkpoint(checkpoint, dataset_path, cfg, Path(run_dir) / "ftwt", seed=seed)
    get_run_logger().info(
        "FTWT mass=%s: conv MACs per input %.0f measured (%.1f%% fewer), %.0f predicted; "
        "test accuracy %.4f gated vs %.4f dense",
        section["mass"],
        section["macs"]["measured"],
        100 * section["reduction"]["measured"],
        section["macs"]["predicted"],
        section["accuracy"]["gated"],
        section["accuracy"]["dense"],
    )
    return section
