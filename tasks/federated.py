"""Prefect task: run a federated experiment over Ray client actors and log every round."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from components.data.decoded_memory import check_decoded_size
from tasks.progress import notify_step

HELD_SPLITS = ("train", "test")  # what the clients train on and the server evaluates on


@task(name="federated", cache_policy=NO_CACHE)
def federated_task(dataset_path: Path, spec, config, run):
    """Start or join Ray, run every strategy's rounds, return the ``ExperimentResult``.

    The train and test splits are held in memory (an image dataset decoded, up to
    :data:`components.data.decoded_memory.WHOLE_SPLITS_BYTES`)."""
    from components.data.reader import read_split
    from components.federated.experiment import run_experiment
    from components.training.ray_runtime import ensure_ray

    logger = get_run_logger()
    check_decoded_size(dataset_path, HELD_SPLITS, "federated")
    ensure_ray(run.ray_address, run.ray_num_cpus)
    data = tuple(part for split in HELD_SPLITS for part in read_split(dataset_path, split))

    def on_round(strategy: str, record) -> None:
        logger.info(
            "%s round %d/%d: %d of %d sampled clients merged, test accuracy %.4f, "
            "%d bytes received",
            strategy,
            record.round + 1,
            config.rounds,
            len(record.participants),
            len(record.sampled),
            record.accuracy,
            record.total_received,
        )
        notify_step({"label": strategy, "accuracy": record.accuracy})

    result = run_experiment(data, spec, config, on_round=on_round)
    for strategy, summary in result.report["strategies"].items():
        for event in summary["events"]:
            logger.warning(
                "%s round %d: client %d %s: %s",
                strategy,
                event["round"],
                event["client"],
                event["kind"],
                event["reason"],
            )
    return result
