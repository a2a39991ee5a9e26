"""Prefect task: explain the best checkpoint's predictions on test samples."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="explain", cache_policy=NO_CACHE)
def explain_task(checkpoint: Path, dataset_path: Path, cfg, seed: int = 0) -> dict:
    """Prototype explanations (prototype models) and Integrated Gradients (every model)."""
    from components.data.reader import load_meta, read_split
    from components.explain.explain import explain_model
    from components.training.checkpoint import load_model

    model, _ = load_model(checkpoint)
    meta = load_meta(dataset_path)
    x, y = read_split(dataset_path, "test")
    result = explain_model(
        model,
        x,
        y,
        num_samples=cfg.num_samples,
        top_k=cfg.top_k,
        ig_steps=cfg.ig_steps,
        class_names=list(meta.class_names),
        seed=seed,
    )
    get_run_logger().info("explained %d test samples (%s)", len(result["samples"]), result["kind"])
    return result
