"""Prefect task: evaluate the best checkpoint on the test split."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from components.data.decoded_memory import sample_rows
from tasks.loading import load_trained

# Decoded image inputs per forward pass when streaming a test split: 512 rows (what the
# in-memory path uses, so metrics match it exactly) up to 64x64 px, 55 rows at 224x224.
STREAM_BATCH_BYTES = 32 << 20


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(checkpoint: Path, dataset_path: Path, seed: int = 0) -> dict:
    """Headline metrics on the test split plus every analysis the model supports.

    On data with part masks, part-prototype models are also scored for consistency and
    stability, against the same network as initialised (same seed) before training.

    An image dataset's test split is streamed (decoded batch by batch), so memory does not grow
    with it; the analyses that need the inputs (certified radius, uncertainty, prototype
    quality) run on its first rows within ``SAMPLE_BYTES`` of decoded inputs
    (:mod:`components.data.decoded_memory`; all of a small dataset), and ``analysis_rows`` in the
    metrics says how many.
    """
    from components.data.reader import load_meta, read_split

    logger = get_run_logger()
    model, spec = load_trained(checkpoint, dataset_path)
    meta = load_meta(dataset_path)
    if meta.is_image:
        metrics, sample = _evaluate_images(model, dataset_path, meta)
    else:
        sample = read_split(dataset_path, "test")
        metrics = _evaluate_arrays(model, sample, meta)
    quality = _prototype_quality(model, spec, dataset_path, meta, sample, seed)
    if quality is not None:
        metrics["prototype_quality"] = quality
    if "analysis_rows" in metrics:
        logger.info(
            "input analyses on the first %d of %d test images (decoded inputs bounded)",
            metrics["analysis_rows"],
            meta.row_counts["test"],
        )
    logger.info("test metrics: %s", _headline_text(metrics))
    return metrics


def _evaluate_arrays(model, sample, meta) -> dict:
    from components.evaluation.evaluate import evaluate_model

    x, y = sample
    return evaluate_model(model, x, y, num_classes=meta.num_classes)


def _evaluate_images(model, dataset_path: Path, meta) -> tuple[dict, tuple | None]:
    """Metrics from the streamed test split, and the decoded sample the analyses ran on."""
    from components.data.reader import iter_batches, read_split
    from components.evaluation.evaluate import evaluate_stream, has_activation_maps, needs_inputs

    wanted = needs_inputs(model) or ("parts" in meta.raw and has_activation_maps(model))
    sample = read_split(dataset_path, "test", limit=sample_rows(meta)) if wanted else None
    batch_size = max(1, min(512, STREAM_BATCH_BYTES // (4 * meta.num_features)))
    batches = iter_batches(dataset_path, "test", batch_size)
    metrics = evaluate_stream(model, batches, num_classes=meta.num_classes, sample=sample)
    if sample is not None:  # prototype quality runs on it too
        metrics["analysis_rows"] = len(sample[1])
    return metrics, sample


def _prototype_quality(model, spec, dataset_path: Path, meta, sample, seed: int) -> dict | None:
    """Consistency and stability on data with part masks (``None`` where they do not apply)."""
    import torch

    from components.data.reader import read_masks
    from components.evaluation.evaluate import has_activation_maps, prototype_quality

    if sample is None or "parts" not in meta.raw or not has_activation_maps(model):
        return None
    x, y = sample
    torch.manual_seed(seed)  # the worker builds the model under the same seed
    untrained = spec.build().eval()
    masks = read_masks(dataset_path, "test")[: len(y)]
    return prototype_quality(model, untrained, x, masks, y, meta.raw["parts"], seed=seed)


def _headline_text(metrics: dict) -> str:
    keys = ("accuracy", "macro_f1", "nll", "ece", "clustering_accuracy", "nmi", "ari")
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
