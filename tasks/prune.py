"""Prefect task: the lottery-ticket rounds, each one Ray Train fit."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.progress import notify_step


@task(name="prune", cache_policy=NO_CACHE)
def prune_task(dataset_path: Path, spec, train, config, run, folder: Path) -> list[dict]:
    """Start or join Ray and run (or continue) the rounds of
    :func:`components.pruning.lottery.run_lottery` in ``folder``, each trained by
    :func:`components.pruning.round_trainers.ray_rounds`; return the round records.

    Every finished round is a progress step, out of ``config.rounds + 1`` (a resumed run's
    earlier rounds count as done)."""
    from components.data.staging import dataset_for_workers
    from components.pruning.lottery import LotteryStore, run_lottery
    from components.pruning.round_trainers import ray_rounds
    from components.training.ray_runtime import ensure_ray
    from tasks.train import run_storage

    ensure_ray(run.ray_address, run.ray_num_cpus)
    logger = get_run_logger()
    train_round = ray_rounds(
        dataset_for_workers(dataset_path, run.ray_storage_path),
        spec,
        train,
        folder,
        storage_path=run_storage(run.ray_storage_path, Path(folder).parent),
        logger=logger,
    )

    def on_round(record: dict) -> None:
        control = record["control"]
        logger.info(
            "round %d: %.1f%% of the weights remain, ticket test accuracy %.4f (best epoch %d)%s",
            record["round"],
            100 * record["remaining"],
            record["ticket"]["test_accuracy"],
            record["ticket"]["best_epoch"],
            "" if control is None else f", re-initialised {control['test_accuracy']:.4f}",
        )
        notify_step(
            {
                "label": "ticket",
                "accuracy": record["ticket"]["test_accuracy"],
                "done": record["round"] + 1,
                "total": config.rounds + 1,
            }
        )

    return run_lottery(spec, config, train_round, LotteryStore(folder), on_round)
