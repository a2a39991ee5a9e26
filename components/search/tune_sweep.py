"""Hyperparameter and architecture search as Ray Tune sweeps.

Every search method is a Tune sweep over a trainable from :mod:`components.search.trials`:

* ``fifo`` / ``random``: random search, every trial to the full budget;
* ``asha``: random search with the ASHA scheduler (Li et al., 2020) stopping poor trials early;
* ``pbt``: Population Based Training (Jaderberg et al., 2017): poor trials clone the weights of
  better ones and perturb their hyperparameters; a trial records whose weights it took;
* ``optuna``: Optuna's TPE sampler (Bergstra et al., 2011) through ``ray.tune.search.optuna``;
* ``stn``: Self-Tuning Networks (MacKay et al., 2019), one trial per starting point;
* ``darts``: (SD-)DARTS (Liu et al., 2019; Zhu et al., 2023), one trial per search setting;
* ``random_ws``: random search with weight sharing (Li & Talwalkar, 2019).

The first five train the pipeline's own model with its fit loop (a Ray Train ``TorchTrainer``
per trial when ``train.num_workers > 1``), on any dataset: image datasets are decoded and
augmented (``augment``) in loader processes, as in training. The last three hold the train and
val splits as in-memory arrays and refuse image datasets (:func:`check_data`). A sweep
interrupted by a killed driver resumes from its experiment state when run again with the same
storage path and name and ``resume=True``; without it an existing experiment is refused rather
than silently continued. A sweep in which no trial ends with a finite validation loss raises
:class:`SweepFailedError`, listing every trial's failure.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ray import tune

from components.data.staging import is_uri, join
from components.search import trials
from components.search.algorithms import tune_config
from components.search.space import tune_space
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig

log = logging.getLogger(__name__)

HYPERPARAMETER_METHODS = ("fifo", "random", "asha", "pbt", "optuna")
METHODS = (*HYPERPARAMETER_METHODS, "stn", "darts", "random_ws")
_TRAINABLES = {
    "stn": trials.stn_trial,
    "darts": trials.darts_trial,
    "random_ws": trials.random_ws_trial,
}


@dataclass(frozen=True)
class SweepConfig:
    """How to search.

    Attributes:
        method: one of :data:`METHODS`.
        num_samples: trials to run.
        max_concurrent: trials running at once.
        grace_period: ASHA: epochs every trial gets before it can be stopped.
        reduction_factor: ASHA: keep the top ``1/reduction_factor`` at each rung.
        perturbation_interval: PBT: epochs between exploit/explore decisions.
        quantile_fraction: PBT: the bottom fraction that clones the top fraction (small
            populations need 0.5, or no trial falls in either).
        seed: seeds the search algorithm (and every trial's training seed).
    """

    method: str = "asha"
    num_samples: int = 8
    max_concurrent: int = 2
    grace_period: int = 1
    reduction_factor: int = 2
    perturbation_interval: int = 2
    quantile_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"search.method={self.method!r} is not one of {list(METHODS)}")
        if min(self.num_samples, self.max_concurrent, self.grace_period) < 1:
            raise ValueError(
                "search.num_samples, search.max_concurrent and search.grace_period must be >= 1"
            )
        if self.reduction_factor < 2 or self.perturbation_interval < 1:
            raise ValueError("search.reduction_factor must be >= 2, perturbation_interval >= 1")
        if not 0 < self.quantile_fraction <= 0.5:
            raise ValueError("search.quantile_fraction must lie in (0, 0.5]")


class SweepFailedError(RuntimeError):
    """No trial of the sweep ended with a finite validation loss; ``trials`` are the rows of
    :attr:`SweepOutcome.trials`, each with its ``error``."""

    def __init__(self, trials: list[dict], experiment_path: str) -> None:
        super().__init__(trials, experiment_path)
        self.trials, self.experiment_path = trials, experiment_path

    def __str__(self) -> str:
        lines = [f"{row['trial']}: {_failure(row)}" for row in self.trials]
        return (
            f"every trial of the sweep failed ({len(self.trials)} trials; experiment "
            f"{self.experiment_path}):\n  " + "\n  ".join(lines)
        )


class SweepExistsError(ValueError):
    """The sweep's experiment folder already holds an experiment, and no resume was asked."""


@dataclass
class SweepOutcome:
    """The sweep's trials and its best one.

    Attributes:
        best_config: the best trial's sampled values (``group.name -> value``).
        best_metrics: the best trial's last reported numbers.
        best_checkpoint: folder of the best trial's checkpoint (None if it has none).
        trials: per trial ``trial``, ``status`` (``done`` | ``stopped early`` | ``failed``),
            ``config``, ``epochs``, ``val_loss``, ``val_accuracy``, ``exploited``, ``history``
            (per-epoch rows) or ``error``.
        experiment_path: the Tune experiment folder (resumable).
        schedules: ``stn``: per trial, the learned hyperparameters per epoch.
        genotype: ``darts`` / ``random_ws``: the best trial's architecture.
        alphas: ``darts``: the best trial's softmaxed architecture weights.
    """

    best_config: dict
    best_metrics: dict
    best_checkpoint: str | None
    trials: list[dict] = field(default_factory=list)
    experiment_path: str = ""
    schedules: dict[str, list[dict]] = field(default_factory=dict)
    genotype: dict | None = None
    alphas: dict | None = None


def run_sweep(
    *,
    dataset_path: Path | str,
    spec: ModelSpec,
    train: TrainConfig,
    space: dict,
    sweep: SweepConfig,
    storage_path: Path | str,
    name: str = "sweep",
    stn: dict | None = None,
    darts: dict | None = None,
    callbacks: list[tune.Callback] = (),
    augment: str = "none",
    images: bool = False,
    resume: bool = False,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> SweepOutcome:
    """Run a Tune sweep, or with ``resume`` continue the one in ``storage_path/name``.

    Ray must already be initialised. A trial that raises is recorded as failed; the sweep goes on.

    Args:
        dataset_path: the ingested dataset folder, or its staged URI
            (:func:`components.data.staging.dataset_for_workers`).
        spec: the model the hyperparameter methods train.
        train: its training configuration (``epochs`` is the per-trial budget).
        space: the search space (see :mod:`components.search.space`).
        sweep: the method and its settings.
        storage_path: where Tune keeps the experiment: a local path or a URI (``s3://...``).
        name: the experiment's folder name under ``storage_path``.
        stn: :class:`~components.search.stn.STNConfig` fields for ``stn`` trials.
        darts: :class:`~components.search.darts.DartsConfig` fields (and ``num_candidates``) for
            ``darts`` / ``random_ws`` trials.
        callbacks: Tune callbacks (progress and logging on the driver).
        augment: image datasets: the training augmentation (``data.augment``).
        images: the dataset holds encoded images (:attr:`DatasetMeta.is_image`).
        resume: continue the interrupted experiment in ``storage_path/name`` (finished trials
            are kept, unfinished ones resume from their checkpoints); without an experiment
            there, a new one starts.
        logger: where the sweep's start and its best trial are told (the search task passes
            Prefect's run logger).

    Raises:
        ValueError: the storage or the dataset does not suit the method (see
            :func:`check_storage`, :func:`check_data`).
        SweepExistsError: ``storage_path/name`` holds an experiment and ``resume`` is false.
        SweepFailedError: no trial ended with a finite validation loss.
    """
    check_storage(storage_path, sweep.method, train.num_workers)
    check_data(sweep.method, images)
    storage = str(storage_path) if is_uri(storage_path) else str(Path(storage_path).resolve())
    experiment = join(storage, name)
    restore = existing_experiment(storage, name) is not None
    if restore and not resume:
        raise SweepExistsError(existing_experiment_message(experiment))
    trainable = _trainable(
        sweep,
        train,
        {
            "dataset_path": (
                str(dataset_path) if is_uri(dataset_path) else str(Path(dataset_path).resolve())
            ),
            "spec": spec,
            "train": train,
            "stn": dict(stn or {}),
            "darts": dict(darts or {}),
            "augment": augment,
        },
    )
    # Every epoch's checkpoint triggers a state snapshot; Tune warns about each burst of them.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        # PBT clones other trials' checkpoints: deleting old ones would break exploits.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None if sweep.method == "pbt" else 2),
        callbacks=list(callbacks),
        verbose=0,
    )
    budget = _budget(sweep, train, stn, darts)
    logger.info(
        "search %s: %d trials, at most %d at once",
        sweep.method,
        sweep.num_samples,
        sweep.max_concurrent,
    )
    if restore:
        # The saved run config (callbacks included) comes back with the experiment.
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(space),
            tune_config=tune_config(sweep, space, budget),
            run_config=run_config,
        )
    outcome = _outcome(tuner.fit(), experiment, sweep.method, budget)
    failed = sum(t["status"] == "failed" for t in outcome.trials)
    best_loss = outcome.best_metrics.get("val_loss")
    logger.info(
        "best trial: %s (val_loss %s); %d trials, %d failed",
        outcome.best_config,
        f"{best_loss:.4f}" if isinstance(best_loss, float) else best_loss,
        len(outcome.trials),
        failed,
    )
    return outcome


def existing_experiment(storage_path: Path | str, name: str = "sweep") -> str | None:
    """The experiment folder ``storage_path/name`` if it holds a Tune experiment, else None."""
    storage = str(storage_path) if is_uri(storage_path) else str(Path(storage_path).resolve())
    experiment = join(storage, name)
    return experiment if tune.Tuner.can_restore(experiment) else None


def existing_experiment_message(experiment: str) -> str:
    """Why a sweep without ``--resume`` refuses ``experiment`` (one sentence for the user)."""
    return (
        f"{experiment} already holds a sweep's experiment; pass --resume to continue it, or "
        "choose another run.id (or ray.storage_path) to start a new sweep"
    )


def check_storage(storage_path, method: str, num_workers: int) -> None:
    """``ValueError`` when trials of ``method`` cannot keep their results at ``storage_path``:
    Ray Train trials (``num_workers > 1``) need a filesystem every node mounts, not a URI."""
    if is_uri(storage_path) and num_workers > 1 and method not in _TRAINABLES:
        raise ValueError(
            f"train.num_workers={num_workers} sweeps need ray.storage_path on a filesystem "
            f"every node mounts, not {storage_path}: their Ray Train runs keep checkpoints there"
        )


def check_data(method: str, images: bool) -> None:
    """``ValueError`` when ``method`` cannot search on an image dataset: STN, DARTS and
    random_ws trials batch the train and val splits from in-memory arrays, which for images
    would mean decoding every file in the trial's process (gigabytes at 224x224)."""
    if images and method in _TRAINABLES:
        raise ValueError(
            f"search={method} cannot run on an image dataset: its trials hold the decoded train "
            "and val splits in memory as arrays instead of decoding images in loader processes; "
            "use search=asha, pbt, optuna or random (they train on images as the pipeline does)"
        )


def _trainable(sweep: SweepConfig, train: TrainConfig, base: dict):
    if sweep.method in _TRAINABLES:
        function, resources = _TRAINABLES[sweep.method], {"cpu": 1}
    elif train.num_workers > 1:
        if sweep.method == "pbt":
            raise ValueError(
                "search.method=pbt needs train.num_workers=1: PBT clones trial checkpoints, "
                "which Ray Train runs keep to themselves"
            )
        # The trial's driver only waits and takes no CPU (Tune refuses an empty request, hence
        # a token of memory); the TorchTrainer reserves its workers' resources itself.
        function, resources = trials.ray_train_trial, {"memory": 2**20}
    else:
        function, resources = trials.fit_trial, {"cpu": train.cpus_per_worker}
    return tune.with_resources(tune.with_parameters(function, base=base), resources)


def _budget(sweep: SweepConfig, train: TrainConfig, stn: dict | None, darts: dict | None) -> int:
    """Epochs of one full trial (ASHA's ``max_t``)."""
    settings = {"stn": stn, "darts": darts, "random_ws": darts}.get(sweep.method)
    if settings is None:
        return train.epochs
    return int(settings.get("epochs", 1))


def _outcome(results, experiment: str, method: str, budget: int) -> SweepOutcome:
    rows = [_trial_row(result, budget) for result in results]
    if not any(_reached_finite_loss(row) for row in rows):
        raise SweepFailedError(rows, experiment)
    best = results.get_best_result(metric="val_loss", mode="min", scope="all")
    outcome = SweepOutcome(
        best_config=best.config,
        best_metrics={k: v for k, v in (best.metrics or {}).items() if isinstance(v, int | float)},
        best_checkpoint=_checkpoint_folder(best),
        trials=rows,
        experiment_path=experiment,
    )
    if method == "stn":
        outcome.schedules = {
            row["trial"]: schedule
            for row, result in zip(rows, results, strict=True)
            if (schedule := _checkpoint_json(result, trials.SCHEDULE_FILE)) is not None
        }
    outcome.genotype = _checkpoint_json(best, trials.GENOTYPE_FILE)
    outcome.alphas = _checkpoint_json(best, trials.ALPHAS_FILE)
    return outcome


def _trial_row(result, budget: int) -> dict:
    row = {"trial": Path(result.path).name if result.path else "", "config": result.config}
    if result.error is not None:
        error = str(result.error).strip().splitlines()
        return {**row, "status": "failed", "error": (error[-1] if error else "")[:300]}
    metrics = result.metrics or {}
    epochs = metrics.get("training_iteration") or 0
    return {
        **row,
        # Stopped by the scheduler (ASHA) or by the fit loop's own early stopping.
        "status": "done" if epochs >= budget else "stopped early",
        "epochs": epochs,
        "val_loss": metrics.get("val_loss"),
        "val_accuracy": metrics.get("val_accuracy"),
        "exploited": bool(_exploits(result)),
        "history": _history(result),
    }


def _history(result) -> list[dict]:
    frame = result.metrics_dataframe
    if frame is None:
        return []
    columns = [c for c in ("epoch", "train_loss", "val_loss", "val_accuracy") if c in frame]
    return [
        {k: float(v) for k, v in row.items() if v == v}  # drop NaN
        for row in frame[columns].to_dict("records")
    ]


def _checkpoint_folder(result) -> str | None:
    """The trial's checkpoint; for a Ray Train trial, its best one still on disk (a scheduler
    may stop the trial before the trainer returns, so the trainer's own result is not used).
    A checkpoint on remote storage is downloaded to a local temporary folder."""
    if result.checkpoint is not None:
        if result.checkpoint.filesystem.type_name != "local":
            return result.checkpoint.to_directory()
        return result.checkpoint.path
    frame = result.metrics_dataframe
    if frame is None or "checkpoint_path" not in frame:
        return None
    reported = frame.dropna(subset=["checkpoint_path"]).sort_values("checkpoint_score")
    return next((p for p in reported["checkpoint_path"] if Path(p).is_dir()), None)


def _checkpoint_json(result, name: str):
    if result.checkpoint is None:
        return None
    with result.checkpoint.as_directory() as folder:
        path = Path(folder) / name
        return json.loads(path.read_text()) if path.exists() else None


def _exploits(result) -> list[str]:
    frame = result.metrics_dataframe
    if frame is None or "exploited_from" not in frame:
        return []
    return sorted({v for v in frame["exploited_from"].dropna() if v})


def _reached_finite_loss(row: dict) -> bool:
    """Whether the trial reported a finite val_loss at some epoch (Tune's best is over all)."""
    losses = [row.get("val_loss"), *(epoch.get("val_loss") for epoch in row.get("history", []))]
    return any(isinstance(v, int | float) and math.isfinite(v) for v in losses)


def _failure(row: dict) -> str:
    """What went wrong with one trial, in one line."""
    if row["status"] == "failed":
        return row["error"] or "failed without a message"
    return f"ended after {row['epochs']} epochs with val_loss={row['val_loss']}"
