"""Prefect task: run a Ray Tune sweep (any search method) and log each finished trial."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from ray import tune

from tasks.progress import notify_trial


class TrialLogger(tune.Callback):
    """Logs every finished or failed trial to the Prefect run (and so to the CLI and the UI),
    with the trial's best ``metric`` over its reports (``over_epochs``; else its last one), as
    the sweep selects the best trial.

    A trial's numbers are those of its own last report: Tune's last result of a trial can be
    another's (a PBT exploit at the final perturbation hands over the clone's). The logger holds
    only the sweep's number of trials (each progress event's ``total``), the metric and a few
    numbers per trial, so Tune can pickle it with the experiment and a resumed sweep keeps it.
    """

    KEPT = ("training_iteration", "prune_round", "val_loss", "val_accuracy")

    def __init__(
        self, total: int, metric: str = "val_loss", mode: str = "min", over_epochs: bool = True
    ) -> None:
        self.total, self.metric, self.mode, self.over_epochs = total, metric, mode, over_epochs
        self.best: dict[str, float] = {}
        self.last: dict[str, dict] = {}

    def __setstate__(self, state: dict) -> None:
        # A sweep interrupted under an older version pickled only ``total``: resumable still.
        self.__init__(state["total"])
        self.__dict__.update(state)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.last[trial.trial_id] = {k: result[k] for k in self.KEPT if k in result}
        value = result.get(self.metric)
        if not isinstance(value, int | float) or value != value:  # absent or NaN
            return
        seen = self.best.get(trial.trial_id)
        better = min if self.mode == "min" else max
        keep = seen is None or not self.over_epochs
        self.best[trial.trial_id] = value if keep else better(seen, value)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = self.last.get(trial.trial_id) or trial.last_result or {}
        value = self.best.get(trial.trial_id)
        event = self._event(trials, trial, "finished")
        if value is not None:
            event["value"] = value
        notify_trial(event)
        get_run_logger().info(
            "trial %s finished after %s %s: val_loss=%s val_accuracy=%s (%s %s=%s)",
            trial.trial_id,
            result.get("training_iteration"),
            "pruning rounds" if "prune_round" in result else "epochs",
            _fmt(result.get("val_loss")),
            _fmt(result.get("val_accuracy")),
            "best" if self.over_epochs else "last",
            self.metric,
            _fmt(value),
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        notify_trial(self._event(trials, trial, "failed"))
        get_run_logger().warning("trial %s failed; the sweep goes on", trial.trial_id)

    def _event(self, trials, trial, status: str) -> dict:
        """A progress event for ``trial``, with the sweep's state over all of ``trials``, those
        a resumed sweep finished before it stopped included: how many are done and failed, and
        the best value of the metric so far."""
        ended = {t.trial_id: t.status for t in trials if t.status in ("TERMINATED", "ERROR")}
        ended[trial.trial_id] = "ERROR" if status == "failed" else "TERMINATED"
        values = [self.best[i] for i, s in ended.items() if s == "TERMINATED" and i in self.best]
        better = min if self.mode == "min" else max
        return {
            "trial": trial.trial_id,
            "status": status,
            "total": self.total,
            "done": len(ended),
            "failed": sum(s == "ERROR" for s in ended.values()),
            "metric": self.metric,
            "mode": self.mode,
            "best": better(values) if values else None,
        }


@task(name="search", cache_policy=NO_CACHE)
def search_task(
    dataset_path: Path,
    spec,
    train,
    search,
    storage_path: Path | str,
    run,
    augment: str = "none",
    resume: bool = False,
    ssl=None,
    prune=None,
):
    """Start or join Ray, run (or with ``resume`` continue) the sweep, and return its
    ``SweepOutcome``.

    ``augment`` is the training augmentation of image datasets (``data.augment``); ``ssl`` the
    ``SSLConfig`` each trial pre-trains its encoder with, ``prune`` the ``PruneConfig`` each
    trial runs lottery rounds with (None: none)."""
    from components.data.reader import load_meta
    from components.data.staging import dataset_for_workers
    from components.search.tune_sweep import run_sweep, selects_on_best_epoch
    from components.training.ray_runtime import ensure_ray

    ensure_ray(run.ray_address, run.ray_num_cpus)
    return run_sweep(
        dataset_path=dataset_for_workers(dataset_path, run.ray_storage_path),
        spec=spec,
        train=train,
        space=search.space,
        sweep=search.sweep,
        storage_path=storage_path,
        stn=search.stn,
        darts=search.darts,
        bossnas=search.bossnas,
        enas=search.enas,
        callbacks=[
            TrialLogger(
                search.sweep.num_samples,
                *search.sweep.selection[0],
                over_epochs=selects_on_best_epoch(search.sweep, prune),
            )
        ],
        augment=augment,
        images=load_meta(dataset_path).is_image,
        resume=resume,
        ssl=ssl,
        prune=prune,
        logger=get_run_logger(),
    )


@task(name="best-model", cache_policy=NO_CACHE)
def best_model_task(spec, train, method: str, outcome):
    """The model spec and training config that retrain the sweep's best result
    (:func:`components.search.best.best_model`), logged."""
    from components.search.best import best_model

    spec, train = best_model(spec, train, method, outcome)
    shown = {k: ("<genotype>" if "genotype" in k else v) for k, v in spec.kwargs.items()}
    get_run_logger().info("retraining the best configuration: %s %s", spec.name, shown)
    if train.hyper_schedule:
        get_run_logger().info(
            "replaying the STN schedule: %d epochs, first %s, last %s",
            len(train.hyper_schedule),
            train.hyper_schedule[0],
            train.hyper_schedule[-1],
        )
    return spec, train


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
