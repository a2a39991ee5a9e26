"""Hyperparameter and architecture search as Ray Tune sweeps.

Every search method is a Tune sweep over a trainable from :mod:`components.search.trials`:

* ``fifo`` / ``random``: random search, every trial to the full budget;
* ``asha``: random search with the ASHA scheduler (Li et al., 2020) stopping poor trials early;
* ``pbt``: Population Based Training (Jaderberg et al., 2017): poor trials clone the weights of
  better ones and perturb their hyperparameters; a trial records whose weights it took;
* ``optuna``: Optuna's TPE sampler (Bergstra et al., 2011) through ``ray.tune.search.optuna``;
* ``hyperband``: synchronous HyperBand brackets (Li et al., 2018);
* ``pb2``: Population Based Bandits (Parker-Holder et al., 2020): PBT with a GP-bandit explore;
* ``bohb``: BOHB (Falkner et al., 2018): a kernel-density model proposing HyperBand's trials;
* ``stn``: Self-Tuning Networks (MacKay et al., 2019), one trial per starting point;
* ``darts``: (SD-)DARTS (Liu et al., 2019; Zhu et al., 2023), one trial per search setting;
* ``random_ws``: random search with weight sharing (Li & Talwalkar, 2019);
* ``enas``: ENAS (Pham et al., 2018), an LSTM controller trained by REINFORCE over the DARTS
  cells with weight sharing, optionally with Adam & Lorraine's (2019) memory buffer;
* ``bossnas``: BossNAS (Li et al., 2021), block-wise self-supervised search of a hybrid
  CNN-transformer space by ensemble bootstrapping, one trial per search setting.

The first eight train the pipeline's own model with its fit loop (a Ray Train ``TorchTrainer``
per trial when ``train.num_workers > 1``), on any dataset: image datasets are decoded and
augmented (``augment``) in loader processes, as in training. DARTS and random_ws hold the train
and val splits as in-memory arrays and refuse image datasets (:func:`check_data`); an STN of the
configured model reads them through the same loaders. A sweep
interrupted by a killed driver resumes from its experiment state when run again with the same
storage path and name and ``resume=True``; without it an existing experiment is refused rather
than silently continued. A sweep in which no trial ends with a finite value of the metric it
ranks by raises :class:`SweepFailedError`, listing every trial's failure.

Trials are ranked by ``search.metric`` (any metric of
:data:`components.search.trial_metrics.METRICS`: ``val_loss`` by default, ``val_accuracy``,
``val_ece``, ``faithfulness``, ``prototype_consistency``; ``remaining``, the sparsity of a
lottery ticket, in a pruning sweep: :mod:`components.search.trial_prune`). With
``search.objectives`` (two of them, ``optuna`` only) the search is multi-objective and the
retrained trial is the Pareto front's point that ``search.pick`` chooses
(:mod:`components.search.pareto`).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import ray
from ray import tune

from components.data.staging import is_uri, join
from components.pruning.imp_config import PruneConfig
from components.search import pareto, storage, trial_metrics, trial_prune, trial_rows, trials
from components.search.algorithms import tune_config
from components.search.bossnas import bossnas_config
from components.search.resources import (
    check_cluster,
    check_combination,
    trial_resources,
)
from components.search.space import check_prune_search, check_ssl_search, tune_space
from components.search.sweep_config import CHECKPOINT_METHODS, IN_MEMORY_METHODS, SweepConfig
from components.ssl.config import SSLConfig
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig

log = logging.getLogger(__name__)

_TRAINABLES = {
    "stn": trials.stn_trial,
    "darts": trials.darts_trial,
    "random_ws": trials.random_ws_trial,
    "enas": trials.enas_trial,
    "bossnas": trials.bossnas_trial,
}


class SweepFailedError(RuntimeError):
    """No trial of the sweep ended with a finite value of the metric(s) it ranks by
    (``metrics``); ``trials`` are the rows of :attr:`SweepOutcome.trials`, each with its
    ``error``."""

    def __init__(
        self, trials: list[dict], experiment_path: str, metrics: tuple[str, ...] = ("val_loss",)
    ) -> None:
        super().__init__(trials, experiment_path, metrics)
        self.trials, self.experiment_path, self.metrics = trials, experiment_path, metrics

    def __str__(self) -> str:
        lines = [f"{row['trial']}: {_failure(row, self.metrics)}" for row in self.trials]
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
        best_trial: the best trial's name (its ``trial`` in ``trials``).
        best_metrics: the best trial's numbers in the report it was selected on: its best
            epoch by the metric, or its last report (a pruning sweep, a Pareto pick).
        best_checkpoint: folder of the best trial's checkpoint (None if it has none).
        trials: per trial ``trial``, ``status`` (``done`` | ``stopped early`` | ``failed``),
            ``config``, ``epochs``, ``val_loss``, ``val_accuracy``, ``exploited``, ``history``
            (per-epoch rows) or ``error``.
        experiment_path: the Tune experiment folder (resumable).
        schedules: ``stn``: per trial, the learned hyperparameters per epoch.
        genotype: ``darts`` / ``random_ws``: the best trial's architecture (``bossnas``: its
            blocks and path ratings, :meth:`~components.search.bossnas.BossNASResult.to_dict`).
        alphas: ``darts``: the best trial's softmaxed architecture weights.
        metric, mode: what trials were ranked by (with ``objectives``: the first objective).
        pareto: with ``objectives``: ``objectives``, ``modes``, ``front`` (the trials on the
            Pareto front), ``pick`` (the rule), ``pick_within`` and ``picked`` (the trial
            retrained: ``best_config`` and ``best_checkpoint`` are its own); else None.
    """

    best_config: dict
    best_trial: str
    best_metrics: dict
    best_checkpoint: str | None
    trials: list[dict] = field(default_factory=list)
    experiment_path: str = ""
    schedules: dict[str, list[dict]] = field(default_factory=dict)
    genotype: dict | None = None
    alphas: dict | None = None
    metric: str = "val_loss"
    mode: str = "min"
    pareto: dict | None = None


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
    bossnas: dict | None = None,
    enas: dict | None = None,
    callbacks: list[tune.Callback] = (),
    augment: str = "none",
    images: bool = False,
    resume: bool = False,
    ssl: SSLConfig | None = None,
    prune: PruneConfig | None = None,
    reuse_actors: bool = True,
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
            ``darts`` / ``random_ws`` / ``enas`` trials.
        enas: :class:`~components.search.enas.EnasConfig` fields for ``enas`` trials.
        bossnas: :class:`~components.search.bossnas.BossNASConfig` fields for ``bossnas``
            trials.
        callbacks: Tune callbacks (progress and logging on the driver).
        augment: image datasets: the training augmentation (``data.augment``).
        images: the dataset holds encoded images (:attr:`DatasetMeta.is_image`).
        resume: continue the interrupted experiment in ``storage_path/name`` (finished trials
            are kept, unfinished ones resume from their checkpoints); without an experiment
            there, a new one starts.
        ssl: the ``ssl`` group: each trial pre-trains its model's encoder with it and its
            ``ssl.*`` values first (:mod:`components.search.trial_ssl`); None: no pre-training.
        prune: the ``prune`` group: each trial runs lottery-ticket rounds with it and its
            ``prune.*`` values, one report per pruning round, and is ranked by its last
            (sparsest) ticket (:mod:`components.search.trial_prune`); None: no pruning.
        reuse_actors: a finished (or paused) trial's worker process runs the next trial
            (Tune's actor reuse: no process start, and the dataset it read stays in memory, see
            :mod:`components.training.worker_data`); False starts a fresh process per trial,
            as Ray Train trials (``train.num_workers > 1``) always do: the process of one that
            was stopped runs its trainer until that ends, and its children die with it.
            A trial's rows come from the sweep's own copy (:mod:`components.search.trial_rows`),
            not Tune's ``result.json``: a trial restarted on a reused process (PBT's exploits,
            HyperBand's pauses) gets that file copied back from the experiment folder, which
            may lag and lose rows.
        logger: where the sweep's start and its best trial are told (the search task passes
            Prefect's run logger).

    Raises:
        ValueError: the storage or the dataset does not suit the method (see
            :func:`check_storage`, :func:`check_data`; :func:`check_metrics`: the trials
            cannot compute the metric; :func:`~components.search.space.check_ssl_search`,
            :func:`~components.search.space.check_prune_search`: the trials cannot pre-train or
            prune as asked); ``resources_per_trial`` contradicts the
            training set-up or asks for more than the Ray cluster has
            (:mod:`components.search.resources`).
        SweepExistsError: ``storage_path/name`` holds an experiment and ``resume`` is false.
        SweepFailedError: no trial ended with a finite value of the metric(s) it ranks by.
    """
    check_storage(storage_path, sweep.method, train.num_workers)
    check_data(sweep.method, images, stn)
    check_metrics(sweep, train.num_workers)
    check_ssl_search(space, sweep.method, ssl is not None, train.num_workers)
    check_prune_search(space, sweep, prune is not None, ssl is not None, train.num_workers)
    root = _absolute(storage_path)
    experiment = experiment_path(root, name)
    filesystem = storage.filesystem(root)
    restore = existing_experiment(root, name) is not None
    if restore and not resume:
        raise SweepExistsError(existing_experiment_message(experiment))
    trainable = _trainable(
        sweep,
        train,
        {
            "dataset_path": _absolute(dataset_path),
            "spec": spec,
            "train": train,
            "stn": dict(stn or {}),
            "darts": dict(darts or {}),
            "enas": dict(enas or {}),
            "bossnas": dict(bossnas or {}),
            "augment": augment,
            "ssl": ssl,
            "prune": prune,
            "metrics": [name for name, _ in sweep.selection],  # the extra ones cost time
        },
    )
    # Every epoch's checkpoint triggers a state snapshot; Tune warns about each burst of them.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's newer console output prints its experiment table and a TensorBoard path into Ray's
    # temporary session folder even at verbose=0; its older one then prints nothing (the sweep
    # logs every trial itself, and the CLI shows a bar).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    run_config = tune.RunConfig(
        name=name,
        storage_path=root,
        storage_filesystem=filesystem,
        # PBT clones other trials' checkpoints: deleting old ones would break exploits.
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=None if sweep.method in ("pbt", "pb2") else 2
        ),
        callbacks=[trial_rows.TrialRows(), *callbacks],
        verbose=0,
    )
    budget = prune.rounds if prune is not None else _budget(sweep, train, stn, darts, bossnas)
    logger.info(
        "search %s: %d trials, at most %d at once",
        sweep.method,
        sweep.num_samples,
        sweep.max_concurrent,
    )
    if restore:
        storage.remove_partial_files(experiment)
        # The saved run config (callbacks included) comes back with the experiment. Its search
        # space does not: Tune replaces a state it cannot read with an empty search, so the
        # sweep's own space goes back in.
        tuner = tune.Tuner.restore(
            experiment,
            trainable=trainable,
            param_space=tune_space(space),
            resume_errored=False,
            storage_filesystem=filesystem,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(space),
            tune_config=replace(
                tune_config(sweep, space, budget),
                # A stopped Ray Train trial's process stays busy until its trainer has ended.
                reuse_actors=reuse_actors and _trial_resources(sweep, train) is not None,
            ),
            run_config=run_config,
        )
    # A lottery trial is ranked by its last, sparsest ticket, not by its best round.
    scope = "last" if prune is not None else "all"
    with storage.stale_checkpoints_noted(logger.info):
        outcome = _outcome(tuner.fit(), experiment, sweep, budget, scope)
    failed = sum(t["status"] == "failed" for t in outcome.trials)
    logger.info(
        "%s trial: %s (%s); %d trials, %d failed",
        "picked" if sweep.objectives else "best",
        outcome.best_config,
        ", ".join(f"{name} {_fmt(outcome.best_metrics.get(name))}" for name, _ in sweep.selection),
        len(outcome.trials),
        failed,
    )
    return outcome


def existing_experiment(storage_path: Path | str, name: str = "sweep") -> str | None:
    """The experiment folder ``storage_path/name`` if it holds a Tune experiment, else None."""
    experiment = experiment_path(storage_path, name)
    return experiment if tune.Tuner.can_restore(experiment) else None


def experiment_path(storage_path: Path | str, name: str = "sweep") -> str:
    """Where a sweep at ``storage_path`` keeps its Tune experiment: an absolute path or a URI."""
    return join(_absolute(storage_path), name)


def _absolute(path: Path | str) -> str:
    return str(path) if is_uri(path) else str(Path(path).resolve())


def existing_experiment_message(experiment: str) -> str:
    """Why a sweep without ``--resume`` refuses ``experiment`` (one sentence for the user)."""
    return (
        f"{experiment} already holds a sweep's experiment; pass --resume to continue it, or "
        "choose another run.id (or ray.storage_path) to start a new sweep"
    )


def check_storage(storage_path, method: str, num_workers: int) -> None:
    """``ValueError`` when trials of ``method`` cannot keep their results at ``storage_path``:
    Ray Train trials (``num_workers > 1``) need a filesystem every node mounts, not a URI."""
    if is_uri(storage_path) and num_workers > 1 and method not in IN_MEMORY_METHODS:
        raise ValueError(
            f"train.num_workers={num_workers} sweeps need ray.storage_path on a filesystem "
            f"every node mounts, not {storage_path}: their Ray Train runs keep checkpoints there"
        )


def check_data(method: str, images: bool, stn: dict | None = None) -> None:
    """``ValueError`` when ``method`` cannot search on an image dataset: DARTS and random_ws
    trials (and the STN MLP, ``stn.network=mlp``) batch the train and val splits from in-memory
    arrays, which for images would mean decoding every file in the trial's process (gigabytes
    at 224x224). An STN of the configured model reads images through the loaders."""
    if images and method == "stn":
        if (stn or {}).get("network") == "mlp":
            raise ValueError(
                "search=stn with search.stn.network=mlp cannot run on an image dataset: the STN "
                "MLP holds the decoded splits in memory; use search.stn.network=model or auto"
            )
        return
    if images and method in IN_MEMORY_METHODS:
        raise ValueError(
            f"search={method} cannot run on an image dataset: its trials hold the decoded train "
            "and val splits in memory as arrays instead of decoding images in loader processes; "
            "use search=asha, pbt, optuna or random (they train on images as the pipeline does)"
        )


def check_metrics(
    sweep: SweepConfig, num_workers: int, model=None, dataset_path: Path | str | None = None
) -> None:
    """``ValueError`` when the trials cannot compute the metrics the sweep ranks by: the extra
    ones (:mod:`components.search.trial_metrics`) need single-process trials
    (``train.num_workers=1``); ``prototype_consistency`` a part-prototype ``model`` and a
    ``dataset_path`` with part masks (checked when both are given)."""
    names = [name for name, _ in sweep.selection]
    extra = trial_metrics.extra_names(names)
    if extra and num_workers > 1:
        raise ValueError(
            f"search metric(s) {list(extra)} are computed by single-process trials; set "
            f"train.num_workers=1 (got {num_workers}) or rank by val_loss / val_accuracy"
        )
    if model is not None and dataset_path is not None:
        trial_metrics.check_applicable(names, model, dataset_path)


def check_resources(sweep: SweepConfig, num_workers: int) -> None:
    """``ValueError`` when the search and the training set-up contradict each other: a method
    whose trials restart from Tune checkpoints with Ray Train trials (``num_workers > 1``), a GPU
    in ``search.resources_per_trial`` for trials that train on the CPU, or any request for Ray
    Train trials, whose groups reserve their own workers' resources."""
    in_memory = sweep.method in IN_MEMORY_METHODS
    if num_workers > 1 and sweep.method in CHECKPOINT_METHODS:
        raise ValueError(
            f"search.method={sweep.method} needs train.num_workers=1: its trials restart "
            "from Tune checkpoints (cloned or paused), which Ray Train runs keep to themselves"
        )
    check_combination(sweep.resources_per_trial, num_workers=num_workers, in_memory=in_memory)


def check_capacity(sweep: SweepConfig, train: TrainConfig) -> None:
    """``ValueError`` when the connected Ray cluster cannot hold even one trial (Tune would
    wait forever); a Ray Train trial's group is left to Ray Train."""
    if (resources := _trial_resources(sweep, train)) is not None:
        check_cluster(resources, ray.cluster_resources())


def _trial_resources(sweep: SweepConfig, train: TrainConfig) -> dict | None:
    """What one trial reserves; None for a Ray Train trial (its driver takes none)."""
    in_memory = sweep.method in IN_MEMORY_METHODS
    if train.num_workers > 1 and not in_memory:
        return None
    return trial_resources(
        sweep.resources_per_trial,
        cpus_per_worker=train.cpus_per_worker,
        num_workers=train.num_workers,
        in_memory=in_memory,
    )


def _trainable(sweep: SweepConfig, train: TrainConfig, base: dict):
    check_resources(sweep, train.num_workers)
    check_capacity(sweep, train)
    if (resources := _trial_resources(sweep, train)) is None:
        # The trial's driver only waits and takes no CPU (Tune refuses an empty request, hence
        # a token of memory); the TorchTrainer reserves its workers' resources itself.
        function = trials.ray_train_trial
        return tune.with_resources(tune.with_parameters(function, base=base), {"memory": 2**20})
    if sweep.method in IN_MEMORY_METHODS:
        function = _TRAINABLES[sweep.method]
    else:
        function = trials.fit_trial if base["prune"] is None else trial_prune.prune_trial
    # A trial given a GPU (or a share of one) trains on it: Ray makes it the only one visible.
    base = {**base, "device": "cuda" if resources.get("gpu", 0) > 0 else "cpu"}
    return tune.with_resources(tune.with_parameters(function, base=base), resources)


def _budget(
    sweep: SweepConfig,
    train: TrainConfig,
    stn: dict | None,
    darts: dict | None,
    bossnas: dict | None = None,
) -> int:
    """Epochs of one full trial (ASHA's ``max_t``)."""
    if sweep.method == "bossnas":
        return bossnas_config(bossnas or {}).total_epochs
    settings = {"stn": stn, "darts": darts, "random_ws": darts, "enas": darts}.get(sweep.method)
    if settings is None:
        return train.epochs
    return int(settings.get("epochs", 1))


def _outcome(results, experiment: str, sweep: SweepConfig, budget: int, scope: str) -> SweepOutcome:
    rows = [_trial_row(result, budget) for result in results]
    names = tuple(name for name, _ in sweep.selection)
    if not any(_scored(row, names) for row in rows):
        raise SweepFailedError(rows, experiment, names)
    best, front = _select(results, rows, sweep, scope)
    # By name: PBT's trials can share a config (an exploit copies the clone's values).
    best_row = next(row for row in rows if row["trial"] == Path(best.path).name)
    outcome = SweepOutcome(
        best_config=best_row["config"],
        best_trial=best_row["trial"],
        best_metrics={
            k: v
            for k, v in _selected_report(best, sweep, scope).items()
            if isinstance(v, int | float)
        },
        best_checkpoint=_checkpoint_folder(best),
        trials=rows,
        experiment_path=experiment,
        metric=sweep.selection[0][0],
        mode=sweep.selection[0][1],
        pareto=front,
    )
    if sweep.method == "stn":
        outcome.schedules = {
            row["trial"]: schedule
            for row, result in zip(rows, results, strict=True)
            if (schedule := _checkpoint_json(result, trials.SCHEDULE_FILE)) is not None
        }
    outcome.genotype = _checkpoint_json(best, trials.GENOTYPE_FILE)
    outcome.alphas = _checkpoint_json(best, trials.ALPHAS_FILE)
    return outcome


def _select(
    results, rows: list[dict], sweep: SweepConfig, scope: str
) -> tuple[object, dict | None]:
    """The trial to retrain: Tune's best by the metric (over each trial's reports, ``scope``
    ``all``, or its last one), or the Pareto front's picked point (over the trials' final
    values) with the front's description."""
    if not sweep.objectives:
        ((metric, mode),) = sweep.selection
        return results.get_best_result(metric=metric, mode=mode, scope=scope), None
    names, modes = list(sweep.objectives), [mode for _, mode in sweep.selection]
    scored = [i for i, row in enumerate(rows) if _scored(row, names)]
    points = [[rows[i][name] for name in names] for i in scored]
    picked = scored[pareto.pick(points, modes, sweep.pick, names=names, within=sweep.pick_within)]
    front = {
        "objectives": names,
        "modes": modes,
        "front": [rows[scored[i]]["trial"] for i in pareto.pareto_front(points, modes)],
        "pick": sweep.pick,
        "pick_within": sweep.pick_within,
        "picked": rows[picked]["trial"],
    }
    return results[picked], front


def _trial_row(result, budget: int) -> dict:
    row = {"trial": Path(result.path).name if result.path else "", "config": result.config}
    if result.error is not None:
        error = str(result.error).strip().splitlines()
        return {**row, "status": "failed", "error": (error[-1] if error else "")[:300]}
    metrics = _last_report(result)
    row["config"] = metrics.get("config", result.config)
    epochs = metrics.get("training_iteration") or 0
    return {
        **row,
        # Stopped by the scheduler (ASHA) or by the fit loop's own early stopping.
        "status": "done" if epochs >= budget else "stopped early",
        "epochs": epochs,
        "val_loss": metrics.get("val_loss"),
        "val_accuracy": metrics.get("val_accuracy"),
        **{
            k: metrics[k]
            for k in trial_metrics.METRICS
            if k in metrics and k not in ("val_loss", "val_accuracy")
        },
        "exploited": bool(_exploits(result)),
        "history": _history(result),
    }


def _reports(result) -> list[dict]:
    """The trial's own reports, one per iteration: the sweep's copy where it kept one (local
    storage; :mod:`components.search.trial_rows`), else Tune's."""
    if (rows := _rows(result)) is not None:
        return trial_rows.latest_per_iteration(rows)
    if (frame := result.metrics_dataframe) is None:
        return []
    return frame.drop(columns=[c for c in frame if c.startswith("config/")]).to_dict("records")


def _last_report(result) -> dict:
    """The trial's own last report, with the ``config`` it ran under where the sweep kept its
    rows. Tune's last result can be another trial's: a PBT exploit at the final perturbation
    gives the trial the clone's config and result, though it never trains on them."""
    rows = _rows(result)
    return trial_rows.latest_per_iteration(rows)[-1] if rows else (result.metrics or {})


def selects_on_best_epoch(sweep: SweepConfig, prune) -> bool:
    """Whether the best trial is chosen on each trial's best report by the metric, not its last:
    not for a pruning sweep (``prune``: its rounds) nor a Pareto pick (final values)."""
    return prune is None and not sweep.objectives


def _selected_report(result, sweep: SweepConfig, scope: str) -> dict:
    """The trial's own report it was selected on: its best by the metric over all its reports
    (``scope`` ``all``), else (``last``, or a Pareto pick over final values) its last one."""
    if scope != "all" or sweep.objectives:
        return _last_report(result)
    ((metric, mode),) = sweep.selection
    scored = [report for report in _reports(result) if _finite(report.get(metric))]
    if not scored:
        return _last_report(result)
    return (min if mode == "min" else max)(scored, key=lambda report: report[metric])


def _history(result) -> list[dict]:
    names = ("epoch", "prune_round", "train_loss", *trial_metrics.METRICS)
    return [
        {k: float(v) for k, v in report.items() if k in names and _finite(v)}
        for report in _reports(result)
    ]


def _rows(result) -> list[dict] | None:
    """The trial's rows as the sweep kept them (:mod:`components.search.trial_rows`)."""
    local = result.path and storage.is_local(result.filesystem)
    return trial_rows.read_rows(result.path) if local else None


def _checkpoint_folder(result) -> str | None:
    """The trial's checkpoint; for a Ray Train trial, its best one still on disk (a scheduler
    may stop the trial before the trainer returns, so the trainer's own result is not used).
    A checkpoint on remote storage is downloaded to a local temporary folder."""
    if result.checkpoint is not None:
        if not storage.is_local(result.checkpoint.filesystem):
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
    with storage.checkpoint_folder(result.checkpoint) as folder:
        path = Path(folder) / name
        return json.loads(path.read_text()) if path.exists() else None


def _exploits(result) -> list[str]:
    if (rows := _rows(result)) is not None:
        return sorted({v for row in rows if (v := row.get("exploited_from"))})
    frame = result.metrics_dataframe
    if frame is None or "exploited_from" not in frame:
        return []
    return sorted({v for v in frame["exploited_from"].dropna() if v})


def _scored(row: dict, names: Sequence[str]) -> bool:
    """Whether the trial can be ranked: for one metric, a finite value at some epoch (Tune's
    best is over all); for objectives, finite final values of each (the front's points)."""
    if len(names) > 1:
        return all(_finite(row.get(name)) for name in names)
    values = [row.get(names[0]), *(epoch.get(names[0]) for epoch in row.get("history", []))]
    return any(_finite(v) for v in values)


def _finite(value) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _failure(row: dict, metrics: Sequence[str] = ("val_loss",)) -> str:
    """What went wrong with one trial, in one line."""
    if row["status"] == "failed":
        return row["error"] or "failed without a message"
    values = " ".join(f"{name}={row.get(name)}" for name in metrics)
    return f"ended after {row['epochs']} epochs with {values}"
