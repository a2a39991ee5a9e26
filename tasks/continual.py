"""Prefect task: run continual learners (one Ray actor per method) through one stream."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from components.data.decoded_memory import check_decoded_size
from tasks.progress import notify_step

HELD_SPLITS = ("train", "test")  # the stream's tasks and the test set every task is scored on


@task(name="continual", cache_policy=NO_CACHE)
def continual_task(dataset_path: Path, config, run) -> dict:
    """Start or join Ray, run every method's stream (and the federated one if asked), and
    return the report's ``continual`` dict.

    The train and test splits are held in memory, flattened (an image dataset decoded, up to
    :data:`components.data.decoded_memory.WHOLE_SPLITS_BYTES`)."""
    from components.continual.experiment import run_methods
    from components.continual.federated import run_federated_continual
    from components.continual.scenarios import class_incremental
    from components.data.reader import read_split
    from components.training.ray_runtime import ensure_ray

    logger = get_run_logger()
    check_decoded_size(dataset_path, HELD_SPLITS, "continual")
    ensure_ray(run.ray_address, run.ray_num_cpus)
    x, y = read_split(dataset_path, "train")
    x_test, y_test = read_split(dataset_path, "test")
    x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
    num_classes = int(max(y.max(), y_test.max())) + 1
    learners = {m: config.learner_config(m, x.shape[1], num_classes) for m in config.methods}
    tasks = class_incremental(
        y, config.num_tasks, classes_per_task=config.classes_per_task, seed=config.seed
    )
    logger.info("stream: %s", " -> ".join(str(list(t.classes)) for t in tasks))

    def on_task(method: str, result: dict) -> None:
        row = [a for a in result["row"][: result["task"] + 1] if not math.isnan(a)]
        accuracy = sum(row) / len(row)
        logger.info(
            "%s task %d/%d: average accuracy on the tasks so far %.4f",
            method,
            result["task"] + 1,
            config.num_tasks,
            accuracy,
        )
        notify_step({"label": method, "accuracy": accuracy})

    methods = run_methods(
        (x, y, x_test, y_test),
        tasks,
        learners,
        config.method_params,
        on_task=on_task,
        max_restarts=config.max_restarts,
    )
    for method, result in methods.items():
        for restart in result["restarts"]:
            logger.warning(
                "%s: learner actor died at task %d and was restarted from its last completed "
                "task: %s",
                method,
                restart["task"] + 1,
                restart["reason"],
            )
        s = result["summary"]
        logger.info(
            "%s: average accuracy %.4f, forgetting %.4f",
            method,
            s["average_accuracy"],
            s["forgetting"],
        )
    for method, result in methods.items():
        result["config"] = dataclasses.asdict(learners[method])
    federated = None
    if config.federated_clients:
        federated = run_federated_continual(
            (x, y, x_test, y_test),
            config.learner_config("ncm", x.shape[1], num_classes),
            config.federated_clients,
            config.num_tasks,
            config.seed,
            on_task=lambda i, row: notify_step({"label": "federated", "accuracy": _mean(row)}),
        )
    return {
        "num_tasks": config.num_tasks,
        "tasks": [list(t.classes) for t in tasks],
        "schedule": _shared_schedule(learners.values()),
        "methods": methods,
        "federated": federated,
    }


_SCHEDULE_KEYS = ("max_lr", "const_lr", "min_lr", "warmup_steps", "cooldown_steps", "anneal_steps")


def _mean(row: list[float]) -> float:
    return sum(row) / len(row)


def _shared_schedule(configs) -> dict | None:
    """The schedule's settings when every method uses the same ones, else None (each method's
    ``config`` in the result holds its own)."""
    schedules = {tuple(getattr(c, k) for k in _SCHEDULE_KEYS) for c in configs}
    return dict(zip(_SCHEDULE_KEYS, schedules.pop(), strict=True)) if len(schedules) == 1 else None
