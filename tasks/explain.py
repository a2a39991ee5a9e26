"""Prefect task: explain the best checkpoint's predictions on test samples."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.loading import load_trained

BECAUSE_IMAGES = 64  # test images behind the "this looks like that, because" table


@task(name="explain", cache_policy=NO_CACHE)
def explain_task(checkpoint: Path, dataset_path: Path, cfg, seed: int = 0, run=None) -> dict:
    """Prototype explanations (prototype models), Integrated Gradients (every model), for
    part-prototype models which visual characteristics each prototype relies on, and the
    configured post-hoc methods scored and ranked (``result["post_hoc"]``).

    ``run`` (the run settings) says which Ray to join when ``cfg.num_tasks > 1``."""
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
        pushed_images=_pushed_images(model, dataset_path) if is_pushed(model) else None,
    )
    if has_activation_maps(model):
        images = x[:BECAUSE_IMAGES]
        raw = images.reshape(len(images), -1) * meta.std + meta.mean
        result["because"] = characteristic_importance(
            model, images, meta.mean, meta.std, pixel_range=(float(raw.min()), float(raw.max()))
        )
    logger = get_run_logger()
    logger.info("explained %d test samples (%s)", len(result["samples"]), result["kind"])
    if cfg.methods:
        result["post_hoc"] = _post_hoc(model, checkpoint, dataset_path, meta, cfg, run)
        ranking = result["post_hoc"]["ranking"]
        logger.info(
            "post-hoc methods ranked by %s on %d test samples: %s",
            ranking["metric"],
            ranking["num_samples"],
            ", ".join(f"{r['method']} {r['mean']:.4f}" for r in ranking["rows"]),
        )
    return result


def _pushed_images(model, dataset_path: Path):
    """The training sample behind every pushed prototype, read row by row (not the split)."""
    from components.data.reader import read_rows

    return read_rows(dataset_path, "train", model.push_sample.cpu().numpy())[0]


def _post_hoc(model, checkpoint, dataset_path, meta, cfg, run) -> dict:
    from components.data.reader import read_masks, read_split
    from components.explain.posthoc import explain_post_hoc, local_attribute

    test_x, test_y = read_split(dataset_path, "test")
    x, y = test_x[: cfg.eval_samples], test_y[: cfg.eval_samples]
    masks = read_masks(dataset_path, "test")[: cfg.eval_samples] if "parts" in meta.raw else None
    attribute_fn = (
        _ray_attribute(checkpoint, cfg, run) if cfg.num_tasks > 1 else local_attribute(model, cfg)
    )
    return explain_post_hoc(
        model,
        x,
        y,
        config=cfg,
        num_shown=min(cfg.num_samples, len(x)),
        masks=masks,
        attribute_fn=attribute_fn,
        surrogate_data=(read_split(dataset_path, "train")[0], test_x),
    )


def _ray_attribute(checkpoint: Path, cfg, run):
    """``attribute(method, x)`` fanned out over ``cfg.num_tasks`` Ray tasks, one chunk of samples
    each; every task loads the checkpoint itself (it must be on storage all nodes can read)."""
    import numpy as np
    import ray

    from components.training.ray_runtime import ensure_ray

    ensure_ray(run.ray_address if run else None, run.ray_num_cpus if run else None)
    remote = ray.remote(num_cpus=1)(_attribute_chunk)

    def attribute_fn(method: str, x):
        chunks = np.array_split(x, min(cfg.num_tasks, len(x)))
        refs = [remote.remote(str(checkpoint), cfg, method, c) for c in chunks]
        return np.concatenate(ray.get(refs))

    return attribute_fn


def _attribute_chunk(checkpoint: str, cfg, method: str, x):
    """Ray task body: load the model and explain one chunk of samples."""
    from components.explain.posthoc import local_attribute
    from components.training.checkpoint import load_model

    model, _ = load_model(checkpoint)
    return local_attribute(model.eval(), cfg)(method, x)
