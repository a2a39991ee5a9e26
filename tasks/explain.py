"""Prefect task: explain the best checkpoint's predictions on test samples."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from components.training.trained import load_trained

BECAUSE_IMAGES = 64  # test images behind the "this looks like that, because" table


@task(name="explain", cache_policy=NO_CACHE)
def explain_task(
    checkpoint: Path,
    dataset_path: Path,
    cfg,
    seed: int = 0,
    run=None,
    train_seconds: float | None = None,
) -> dict:
    """Prototype explanations (prototype models), Integrated Gradients (every model), for
    part-prototype models which visual characteristics each prototype relies on, and the
    configured post-hoc methods scored and ranked (``result["post_hoc"]``).

    The stage keeps to ``cfg.budget_s`` (``auto``: ``train_seconds``, the training stage's wall
    time, with a floor): the post-hoc part gets what the prototype explanations left, and
    ``result["post_hoc"]["budget"]`` says what it chose, skipped and spent. Only the test rows
    the config needs are read, and the surrogate's training rows once the budget has chosen
    how many. ``run`` (the run settings) says which Ray to join when ``cfg.num_tasks > 1``."""
    from components.data.reader import load_meta, read_split
    from components.evaluation.analyses import has_activation_maps
    from components.explain.because import characteristic_importance
    from components.explain.budget import resolve_budget
    from components.explain.explain import explain_model
    from components.explain.push_gallery import is_pushed

    start = time.perf_counter()
    budget_s = resolve_budget(cfg.budget_s, train_seconds)
    model, _ = load_trained(checkpoint, dataset_path)
    meta = load_meta(dataset_path)
    x, y = read_split(dataset_path, "test", limit=_test_rows(cfg))
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
    if has_activation_maps(model) and len(meta.feature_shape) == 3:  # hue, texture: images
        images = x[:BECAUSE_IMAGES]
        raw = images.reshape(len(images), -1) * meta.std + meta.mean
        result["because"] = characteristic_importance(
            model, images, meta.mean, meta.std, pixel_range=(float(raw.min()), float(raw.max()))
        )
    logger = get_run_logger()
    logger.info("explained %d test samples (%s)", len(result["samples"]), result["kind"])
    if cfg.methods:
        before = time.perf_counter() - start
        left = max(0.0, budget_s - before)
        result["post_hoc"] = _post_hoc(model, checkpoint, dataset_path, meta, cfg, run, x, y, left)
        _log_post_hoc(logger, result["post_hoc"], budget_s, before, train_seconds, start)
    return result


def _test_rows(cfg) -> int:
    """Test rows the stage reads: the post-hoc samples, the samples shown, the "because" table."""
    return max(cfg.eval_samples, cfg.num_samples, BECAUSE_IMAGES)


def _log_post_hoc(logger, post_hoc: dict, budget_s, before, train_seconds, start) -> None:
    """Log the ranking and the budget line; add the stage's own times to the budget dict."""
    from components.explain.posthoc import budget_line

    budget = post_hoc["budget"]
    budget.update(
        stage_budget_s=budget_s,
        train_s=train_seconds,
        prototype_explanations_s=before,
        stage_s=time.perf_counter() - start,
    )
    ranking = post_hoc["ranking"]
    logger.info(
        "post-hoc methods ranked by %s on %d test samples: %s",
        ranking["metric"],
        ranking["num_samples"],
        ", ".join(f"{r['method']} {r['mean']:.4f}" for r in ranking["rows"]),
    )
    logger.info(
        "explain stage %.1f s of %.1f s (training %s); post-hoc %s",
        budget["stage_s"],
        budget_s,
        "unknown" if train_seconds is None else f"{train_seconds:.1f} s",
        budget_line(budget),
    )


def _pushed_images(model, dataset_path: Path):
    """The training sample behind every pushed prototype, read row by row (not the split)."""
    from components.data.reader import read_rows

    return read_rows(dataset_path, "train", model.push_sample.cpu().numpy())[0]


def _post_hoc(model, checkpoint, dataset_path, meta, cfg, run, x, y, budget_s: float) -> dict:
    """The post-hoc explanations of the first test rows within ``budget_s``; the surrogate's
    rows are read only once the budget has chosen how many."""
    from dataclasses import replace

    from components.data.reader import read_masks, read_split
    from components.explain.posthoc import explain_post_hoc, local_attribute

    x, y = x[: cfg.eval_samples], y[: cfg.eval_samples]
    masks = read_masks(dataset_path, "test")[: len(x)] if "parts" in meta.raw else None
    cfg = replace(cfg, surrogate_samples=min(cfg.surrogate_samples, meta.row_counts["train"]))

    def surrogate_rows(rows: int):
        return tuple(read_split(dataset_path, s, limit=rows)[0] for s in ("train", "test"))

    return explain_post_hoc(
        model,
        x,
        y,
        config=cfg,
        num_shown=min(cfg.num_samples, len(x)),
        masks=masks,
        attribute_fn=(
            _ray_attribute(checkpoint, cfg, run) if cfg.num_tasks > 1 else local_attribute(model)
        ),
        surrogate_data=surrogate_rows,
        budget_s=budget_s,
    )


def _ray_attribute(checkpoint: Path, cfg, run):
    """``attribute_fn(method, x, groups, config)`` fanned out over ``cfg.num_tasks`` Ray tasks,
    one chunk of samples (and of their groups, when each has its own) each; every task loads
    the checkpoint itself (it must be on storage all nodes can read)."""
    import numpy as np
    import ray

    from components.training.ray_runtime import ensure_ray

    ensure_ray(run.ray_address if run else None, run.ray_num_cpus if run else None)
    remote = ray.remote(num_cpus=1)(_attribute_chunk)

    def attribute_fn(method: str, x, groups, config):
        parts = np.array_split(np.arange(len(x)), min(cfg.num_tasks, len(x)))
        refs = [
            remote.remote(
                str(checkpoint), config, method, x[p], groups[p] if len(groups) > 1 else groups
            )
            for p in parts
        ]
        return np.concatenate(ray.get(refs))

    return attribute_fn


def _attribute_chunk(checkpoint: str, config, method: str, x, groups):
    """Ray task body: load the model and explain one chunk of samples."""
    from components.explain.posthoc import local_attribute
    from components.training.checkpoint import load_model

    model, _ = load_model(checkpoint)
    return local_attribute(model.eval())(method, x, groups, config)
