"""Prefect task: evaluate the best checkpoint on the test split."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(checkpoint: Path, dataset_path: Path) -> dict:
    """Accuracy, macro-F1, NLL, ECE (15 bins), per-class accuracy and confusion matrix."""
    from components.data.reader import load_meta, read_split
    from components.evaluation.metrics import classification_metrics
    from components.evaluation.predict import predict_logits
    from components.training.checkpoint import load_model

    model, _ = load_model(checkpoint)
    x, y = read_split(dataset_path, "test")
    logits = predict_logits(model, x)
    metrics = classification_metrics(logits, y, load_meta(dataset_path).num_classes, n_bins=15)
    get_run_logger().info(
        "test accuracy=%.4f macro_f1=%.4f nll=%.4f ece=%.4f on %d samples",
        metrics["accuracy"],
        metrics["macro_f1"],
        metrics["nll"],
        metrics["ece"],
        len(y),
    )
    return metrics
