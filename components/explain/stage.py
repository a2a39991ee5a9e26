"""The explain stage of a trained checkpoint: built-in explanations, then post-hoc ones.

Prototype explanations (prototype models) and Integrated Gradients (every model) of a few test
samples; for part-prototype models on images, which visual characteristics each prototype relies
on ("this looks like that, because"); then the configured post-hoc methods explained, scored and
ranked within what is left of the stage's budget (:mod:`components.explain.posthoc.stage`).
Each split is read once, and only as far as needed: the first test rows the config asks for,
and, once the budget has chosen how many, the surrogate's training rows and its test rows beyond
those already read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from components.data.reader import DatasetMeta, load_meta, read_masks, read_rows, read_split
from components.evaluation.analyses import has_activation_maps
from components.explain.because import characteristic_importance
from components.explain.checks.runner import CheckContext, run_checks
from components.explain.config import ExplainConfig
from components.explain.model_explanations import explain_model
from components.explain.posthoc.budget import resolve_budget
from components.explain.posthoc.ray_fanout import ray_attribute
from components.explain.posthoc.stage import budget_line, explain_post_hoc, local_attribute
from components.explain.push_gallery import is_pushed
from components.training.trained import load_trained

BECAUSE_IMAGES = 64  # test images behind the "this looks like that, because" table

# ``log(message, *args)``, %-style as :meth:`logging.Logger.info`
Log = Callable[..., Any]


def explain_checkpoint(
    checkpoint: Path,
    dataset_path: Path,
    config: ExplainConfig,
    *,
    seed: int = 0,
    train_seconds: float | None = None,
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    log: Log = lambda *args: None,
) -> dict:
    """Explain the model of ``checkpoint`` on the test split of ``dataset_path``.

    The stage keeps to ``config.budget_s`` (``auto``: ``train_seconds``, the training stage's
    wall time, with a floor), counted from this call, loading the model included: the post-hoc
    part gets what the prototype explanations left, and ``result["post_hoc"]["budget"]`` says
    what it chose, skipped and spent.

    Args:
        checkpoint: the trained model's checkpoint folder (Ray tasks load it themselves when
            ``config.num_tasks > 1``, so it must be on storage every node can read).
        dataset_path: the dataset folder the model was trained on.
        config: the stage's settings.
        seed: the run's seed (which samples are shown).
        train_seconds: the training stage's wall time, for ``budget_s=auto``.
        ray_address, ray_num_cpus: which Ray to join or start when ``config.num_tasks > 1``.
        log: called with %-style messages: what was explained, the ranking, the budget line.

    Returns:
        :func:`~components.explain.model_explanations.explain_model`'s dict, with ``because``
        (part-prototype models on images) and ``post_hoc`` (when ``config.methods``).
    """
    start = time.perf_counter()
    budget_s = resolve_budget(config.budget_s, train_seconds)
    model, _ = load_trained(checkpoint, dataset_path)
    meta = load_meta(dataset_path)
    x, y = read_split(dataset_path, "test", limit=_test_rows(config))
    result = explain_model(
        model,
        x,
        y,
        num_samples=config.num_samples,
        top_k=config.top_k,
        ig_steps=config.ig_steps,
        class_names=list(meta.class_names),
        seed=seed,
        pushed_images=pushed_images(model, dataset_path) if is_pushed(model) else None,
    )
    if has_activation_maps(model) and len(meta.feature_shape) == 3:  # hue, texture: images
        result["because"] = _because(model, x, meta)
    log("explained %d test samples (%s)", len(result["samples"]), result["kind"])
    if config.methods:
        before = time.perf_counter() - start
        attribute_fn = (
            ray_attribute(checkpoint, config.num_tasks, address=ray_address, num_cpus=ray_num_cpus)
            if config.num_tasks > 1
            else local_attribute(model)
        )
        left = max(0.0, budget_s - before)
        post_hoc = _post_hoc(model, dataset_path, meta, config, x, y, attribute_fn, left)
        post_hoc["budget"].update(
            stage_budget_s=budget_s,
            train_s=train_seconds,
            prototype_explanations_s=before,
            stage_s=time.perf_counter() - start,
        )
        _log_post_hoc(log, post_hoc, budget_s, train_seconds)
        result["post_hoc"] = post_hoc
    if config.checks:
        context = CheckContext(
            model=model,
            checkpoint=Path(checkpoint),
            dataset_path=Path(dataset_path),
            meta=meta,
            config=config,
            seed=seed,
            explanations=result,
            log=log,
            ray_address=ray_address,
            ray_num_cpus=ray_num_cpus,
        )
        result["checks"] = run_checks(context, config.checks)
    return result


def _test_rows(config: ExplainConfig) -> int:
    """Test rows the stage reads: the post-hoc samples, the samples shown, the "because" table."""
    return max(config.eval_samples, config.num_samples, BECAUSE_IMAGES)


def _because(model: nn.Module, x: np.ndarray, meta: DatasetMeta) -> dict:
    """Which visual characteristics each prototype relies on, over the first test images."""
    images = x[:BECAUSE_IMAGES]
    raw = images.reshape(len(images), -1) * meta.std + meta.mean
    return characteristic_importance(
        model, images, meta.mean, meta.std, pixel_range=(float(raw.min()), float(raw.max()))
    )


def pushed_images(model: nn.Module, dataset_path: Path) -> np.ndarray:
    """The training sample behind every pushed prototype, read row by row (not the split)."""
    return read_rows(dataset_path, "train", model.push_sample.cpu().numpy())[0]


def _post_hoc(model, dataset_path, meta, config, x, y, attribute_fn, budget_s: float) -> dict:
    """The post-hoc explanations of the first test rows within ``budget_s``; the surrogate's
    rows are read only once the budget has chosen how many."""
    shown_x, shown_y = x[: config.eval_samples], y[: config.eval_samples]
    masks = read_masks(dataset_path, "test")[: len(shown_x)] if "parts" in meta.raw else None
    config = replace(
        config, surrogate_samples=min(config.surrogate_samples, meta.row_counts["train"])
    )

    def surrogate_rows(rows: int) -> tuple[np.ndarray, np.ndarray]:
        train = read_split(dataset_path, "train", limit=rows)[0]
        return train, _first_test_rows(dataset_path, x, rows, meta.row_counts["test"])

    return explain_post_hoc(
        model,
        shown_x,
        shown_y,
        config=config,
        num_shown=min(config.num_samples, len(shown_x)),
        masks=masks,
        attribute_fn=attribute_fn,
        surrogate_data=surrogate_rows,
        budget_s=budget_s,
        feature_names=meta.feature_names,
        feature_units=(meta.mean, meta.std),  # the surrogate's rules in the data's own units
        class_names=meta.class_names,
        categorical=meta.categorical,
    )


def _first_test_rows(dataset_path: Path, read: np.ndarray, rows: int, available: int):
    """The first ``rows`` test inputs: those already ``read``, then only the rows beyond them."""
    missing = np.arange(len(read), min(rows, available))
    if not missing.size:
        return read[:rows]
    return np.concatenate([read, read_rows(dataset_path, "test", missing)[0]])


def _log_post_hoc(log: Log, post_hoc: dict, budget_s: float, train_seconds) -> None:
    """Log the ranking and the budget line."""
    budget, ranking = post_hoc["budget"], post_hoc["ranking"]
    log(
        "post-hoc methods ranked by %s on %d test samples: %s",
        ranking["metric"],
        ranking["num_samples"],
        ", ".join(f"{r['method']} {r['mean']:.4f}" for r in ranking["rows"]),
    )
    log(
        "explain stage %.1f s of %.1f s (training %s); post-hoc %s",
        budget["stage_s"],
        budget_s,
        "unknown" if train_seconds is None else f"{train_seconds:.1f} s",
        budget_line(budget),
    )
