"""Prefect tasks: self-supervised pre-training of a model's encoder on Ray Train, then probes
(the pretrain flow's task, and the pipeline's pre-training stage)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

STAGE_FOLDER = "ssl"  # a pipeline run's pre-training stage: <run>/ssl/checkpoints/best
STAGE_FILE = "ssl.json"


@task(name="pretrain", cache_policy=NO_CACHE)
def pretrain_task(dataset_path: Path, source, config, run, run_dir: Path) -> dict:
    """Start or join Ray, pre-train ``source``'s encoder
    (:func:`components.training.ssl_ray.pretrain_with_ray`) into ``run_dir/checkpoints/best``,
    probe it (:func:`components.ssl.evaluation.evaluate_encoder`) and return the report's
    ``ssl`` dict."""
    return _pretrain(dataset_path, source, config, run, run_dir, run_dir)


@task(name="pretrain-stage", cache_policy=NO_CACHE)
def pretrain_stage_task(dataset_path: Path, source, config, run, run_dir: Path) -> dict:
    """A pipeline run's pre-training stage: :func:`pretrain_task`'s work into
    ``run_dir/ssl`` (encoder in ``ssl/checkpoints/best``, the report's ``ssl`` dict in
    ``ssl/ssl.json``, with ``stage: true``). A resumed run whose stage finished reads it back
    instead."""
    from components import atomic

    folder = Path(run_dir) / STAGE_FOLDER
    saved = folder / STAGE_FILE
    if saved.is_file():
        get_run_logger().info("pre-training done before: reusing %s", folder)
        return json.loads(saved.read_text())
    ssl = {**_pretrain(dataset_path, source, config, run, folder, Path(run_dir)), "stage": True}
    atomic.write_text(saved, json.dumps(ssl, indent=1))
    return ssl


def _pretrain(dataset_path: Path, source, config, run, run_dir: Path, run_folder: Path) -> dict:
    """Pre-train into ``run_dir``; on ``ray.storage_path`` under ``run_folder``'s own place."""
    from dataclasses import asdict

    from components.ssl.evaluation import evaluate_encoder
    from components.training.ray_runtime import ensure_ray
    from components.training.ssl_ray import pretrain_with_ray
    from tasks.train import run_storage

    ensure_ray(run.ray_address, run.ray_num_cpus)
    logger = get_run_logger()
    outcome = pretrain_with_ray(
        dataset_path=dataset_path,
        source=source,
        cfg=config,
        run_dir=run_dir,
        storage_path=run_storage(run.ray_storage_path, Path(run_folder)),
    )
    last = outcome.history[-1]
    logger.info("SSL loss %.4f, effective rank %.1f", last["ssl_loss"], last["effective_rank"])
    probes = evaluate_encoder(
        dataset_path, outcome.checkpoint, probe_samples=config.probe_samples, seed=config.seed
    )
    logger.info("linear probe %.4f, k-NN probe %.4f", probes["linear_probe"], probes["knn_probe"])
    return {
        "model": source.name,
        "config": asdict(config),
        "checkpoint": str(outcome.checkpoint),
        "history": outcome.history,
        "probes": probes,
        "cross_correlation": outcome.cross_correlation,
    }
