"""Prefect task: fit a PFN on its prior through Ray Train (the pfn-train flow's task)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="pfn-train", cache_policy=NO_CACHE)
def pfn_train_task(config, run, run_dir: Path) -> dict:
    """Start or join Ray, fit the PFN (:func:`components.training.pfn_ray.pfn_train_with_ray`)
    into ``run_dir/checkpoints/pfn.safetensors``; return its weights path and history."""
    from components.training.pfn_ray import pfn_train_with_ray
    from components.training.ray_runtime import ensure_ray
    from tasks.train import run_storage

    ensure_ray(run.ray_address, run.ray_num_cpus)
    outcome = pfn_train_with_ray(
        config, run_dir, storage_path=run_storage(run.ray_storage_path, Path(run_dir))
    )
    last = outcome.history[-1]
    get_run_logger().info(
        "PFN on prior=%s: step %d, held-out loss %.4f", config.prior, last["step"], last["val_loss"]
    )
    return {"weights": str(outcome.weights), "history": outcome.history}
