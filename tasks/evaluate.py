"""Prefect task: evaluate the best checkpoint on the test split."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.loading import load_trained


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(checkpoint: Path, dataset_path: Path, seed: int = 0) -> dict:
    """Headline metrics on the test split plus every analysis the model supports.

    On data with part masks, part-prototype models are also scored for consistency and
    stability, against the same network as initialised (same seed) before training.
    """
    import torch

    from components.data.reader import load_meta, read_masks, read_split
    from components.evaluation.evaluate import (
        evaluate_model,
        has_activation_maps,
        prototype_quality,
    )

    logger = get_run_logger()
    model, spec = load_trained(checkpoint, dataset_path)
    meta = load_meta(dataset_path)
    x, y = read_split(dataset_path, "test")
    metrics = evaluate_model(model, x, y, num_classes=meta.num_classes)
    if "parts" in meta.raw and has_activation_maps(model):
        torch.manual_seed(seed)  # the worker builds the model under the same seed
        untrained = spec.build().eval()
        masks = read_masks(dataset_path, "test")
        metrics["prototype_quality"] = prototype_quality(
            model, untrained, x, masks, y, meta.raw["parts"], seed=seed
        )
    logger.info("test metrics: %s", _headline_text(metrics))
    return metrics


def _headline_text(metrics: dict) -> str:
    keys = ("accuracy", "macro_f1", "nll", "ece", "clustering_accuracy", "nmi", "ari")
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
