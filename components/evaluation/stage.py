"""The evaluate stage: a trained checkpoint scored on the test split of its dataset.

:mod:`components.evaluation.analyses` says which analyses a model gets. This module reads the
data they need: an array dataset's test split whole, an image dataset's streamed batch by batch
(so memory does not grow with it), with the analyses that need the inputs (certified radius,
uncertainty, prototype quality) on its first rows within
:data:`~components.data.decoded_memory.SAMPLE_BYTES` of decoded inputs (all of a small
dataset); ``analysis_rows`` in the metrics says how many.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from components.data import reader  # looked up per call, so a spy on a reader sees every read
from components.data.decoded_memory import sample_rows
from components.evaluation.analyses import (
    evaluate_model,
    evaluate_stream,
    has_activation_maps,
    needs_inputs,
    prototype_quality,
)
from components.training.trained import load_trained

# Decoded image inputs per forward pass when streaming a test split: 512 rows (what the
# in-memory path uses, so metrics match it exactly) up to 64x64 px, 55 rows at 224x224.
STREAM_BATCH_BYTES = 32 << 20
HEADLINE_KEYS = ("accuracy", "macro_f1", "nll", "ece", "clustering_accuracy", "nmi", "ari")


def evaluate_checkpoint(
    checkpoint: Path,
    dataset_path: Path,
    *,
    seed: int = 0,
    log: Callable[[str], object] | None = None,
) -> dict:
    """Headline metrics on the test split plus every analysis the model supports.

    On data with part masks, part-prototype models are also scored for consistency and
    stability, against the same network as initialised (same seed) before training.

    Args:
        checkpoint: the checkpoint folder of the trained model.
        dataset_path: the dataset it was trained on.
        seed: the training seed (the untrained network is rebuilt under it) and the seed of
            the analyses' sampling.
        log: called with each progress line (e.g. a logger's ``info``); None: silent.

    Returns:
        The metrics (see :class:`components.report.data.EvaluationMetrics`).
    """
    log = log or (lambda message: None)
    model, spec = load_trained(checkpoint, dataset_path)
    meta = reader.load_meta(dataset_path)
    if meta.is_image:
        metrics, sample = _evaluate_images(model, dataset_path, meta)
    else:
        sample = reader.read_split(dataset_path, "test")
        metrics = evaluate_model(model, *sample, num_classes=meta.num_classes)
    quality = _prototype_quality(model, spec, dataset_path, meta, sample, seed)
    if quality is not None:
        metrics["prototype_quality"] = quality
    if "analysis_rows" in metrics:
        log(
            f"input analyses on the first {metrics['analysis_rows']} of "
            f"{meta.row_counts['test']} test images (decoded inputs bounded)"
        )
    log(f"test metrics: {headline_text(metrics)}")
    return metrics


def headline_text(metrics: dict) -> str:
    """The headline metrics present in ``metrics`` as ``name=value`` pairs, 4 decimals."""
    return " ".join(f"{k}={metrics[k]:.4f}" for k in HEADLINE_KEYS if k in metrics)


def _evaluate_images(model, dataset_path: Path, meta) -> tuple[dict, tuple | None]:
    """Metrics from the streamed test split, and the decoded sample the analyses ran on."""
    wanted = needs_inputs(model) or ("parts" in meta.raw and has_activation_maps(model))
    sample = reader.read_split(dataset_path, "test", limit=sample_rows(meta)) if wanted else None
    batch_size = max(1, min(512, STREAM_BATCH_BYTES // (4 * meta.num_features)))
    batches = reader.iter_batches(dataset_path, "test", batch_size)
    metrics = evaluate_stream(model, batches, num_classes=meta.num_classes, sample=sample)
    if sample is not None:  # prototype quality runs on it too
        metrics["analysis_rows"] = len(sample[1])
    return metrics, sample


def _prototype_quality(model, spec, dataset_path: Path, meta, sample, seed: int) -> dict | None:
    """Consistency and stability on data with part masks (``None`` where they do not apply)."""
    if sample is None or "parts" not in meta.raw or not has_activation_maps(model):
        return None
    x, y = sample
    torch.manual_seed(seed)  # the worker builds the model under the same seed
    untrained = spec.build().eval()
    masks = reader.read_masks(dataset_path, "test")[: len(y)]
    return prototype_quality(model, untrained, x, masks, y, meta.raw["parts"], seed=seed)
