"""Prefect task: explain the best checkpoint's predictions on test samples."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.loading import load_trained

BECAUSE_IMAGES = 64  # test images behind the "this looks like that, because" table


@task(name="explain", cache_policy=NO_CACHE)
def explain_task(checkpoint: Path, dataset_path: Path, cfg, seed: int = 0) -> dict:
    """Prototype explanations (prototype models), Integrated Gradients (every model), and for
    part-prototype models which visual characteristics each prototype relies on."""
    from components.data.reader import load_meta, read_split
    from components.evaluation.evaluate import has_activation_maps
    from components.explain.because import characteristic_importance
    from components.explain.explain import explain_model
    from components.explain.push_gallery import is_pushed

    model, _ = load_trained(checkpoint, dataset_path)
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
        train_x=read_split(dataset_path, "train")[0] if is_pushed(model) else None,
    )
    if has_activation_maps(model):
        images = x[:BECAUSE_IMAGES]
        raw = images.reshape(len(images), -1) * meta.std + meta.mean
        result["because"] = characteristic_importance(
            model, images, meta.mean, meta.std, pixel_range=(float(raw.min()), float(raw.max()))
        )
    get_run_logger().info("explained %d test samples (%s)", len(result["samples"]), result["kind"])
    return result
