"""Prefect task: run a federated experiment over Ray client actors and log every round."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.progress import notify_step


@task(name="federated", cache_policy=NO_CACHE)
def federated_task(dataset_path: Path, spec, config, run, states_dir: Path):
    """Start or join Ray, run every strategy's rounds
    (:func:`components.federated.experiment.run_federated`), save each strategy's final global
    state to ``states_dir/<strategy>.safetensors`` and return the ``ExperimentResult``.

    Every round is a progress step of its strategy, out of ``config.rounds``."""
    from components.federated.experiment import run_federated
    from components.federated.messages import save_states
    from components.training.ray_runtime import ensure_ray

    ensure_ray(run.ray_address, run.ray_num_cpus)

    def on_round(strategy: str, record) -> None:
        notify_step({"label": strategy, "accuracy": record.accuracy, "total": config.rounds})

    result = run_federated(dataset_path, spec, config, on_round, logger=get_run_logger())
    save_states(states_dir, result.global_states)
    return result
