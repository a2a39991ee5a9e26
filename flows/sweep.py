"""The sweep flow: ingest -> search (Ray Tune) -> retrain the best -> evaluate -> explain -> report.

Callable from Python (``sweep(overrides=["search=asha"])``), from the CLI (``sennflow sweep``) and
from the Prefect UI (the ``nightly-sweep`` deployment in ``infra/prefect.yaml``), where
:class:`SweepOptions` renders as a form. The search method picks what is retrained:

* hyperparameter methods (``asha``, ``pbt``, ``optuna``, ``hyperband``, ``pb2``, ``bohb``,
  ``random``, ``fifo``): the configured model with the best trial's ``train.*`` / ``model.*``
  values (best by ``search.metric``, or the Pareto front's point ``search.pick`` chose);
* ``stn``: the configured model (default ``mlp``), its fit loop replaying the best STN trial's
  learned schedule (dropout, weight decay, augmentation strengths) epoch by epoch;
* ``darts`` / ``random_ws`` / ``enas``: the best genotype as model ``darts_net`` (default), or as
  the backbone of ``protopnet`` / ``st_protopnet`` when one of those is the configured model;
* ``bossnas``: the searched hybrid CNN-transformer blocks as model ``bossnas_net`` (no other).

With ``ssl=<objective>`` every trial pre-trains its model's encoder first (in-process, with its
``ssl.*`` values: :mod:`components.search.trial_ssl`), and the retrain runs the pipeline's
pre-training stage (Ray Train) with the best trial's values before training from it.

With ``prune=default`` every trial runs lottery-ticket rounds (in-process, with its ``prune.*``
values, e.g. ``prune.rate``: :mod:`components.search.trial_prune`) and is ranked by its last,
sparsest ticket (``search.objectives=[val_accuracy,remaining]`` trades accuracy against
sparsity); the retrain runs the rounds of ``sennflow prune`` (Ray Train fits, controls as
``prune.control`` says) at the best trial's values, and evaluates and explains the last ticket.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, Literal

from prefect import flow, get_run_logger
from pydantic import Field

from components.data.staging import join
from components.search.space import apply_prune_overrides, apply_ssl_overrides
from flows.config import (
    DEFAULT_SEARCH,
    ConfigError,
    compose,
    to_search_settings,
    to_settings,
)
from flows.config_errors import override_key
from flows.pretrain import ssl_source, stage_config
from flows.prune import prune_settings
from flows.run import (
    FlowOptions,
    RunResult,
    TrackedModel,
    all_overrides,
    check_files,
    check_training_fits,
    explanation_headline,
    finish_run,
    headline_metrics,
    open_run,
    report_data,
    resumed_config,
    training_summary,
)
from flows.run_folder import (
    check_run_dir_free,
    new_run_id,
    read_run_json,
    with_run_status,
    write_json,
)
from tasks.evaluate import evaluate_task
from tasks.explain import explain_task
from tasks.history import history_task
from tasks.ingest import ingest_task
from tasks.pretrain import pretrain_stage_task
from tasks.report import circuit_task
from tasks.search import best_model_task, search_task
from tasks.train import train_task

SearchMethod = Literal[
    "asha",
    "pbt",
    "optuna",
    "hyperband",
    "pb2",
    "bohb",
    "random",
    "stn",
    "darts",
    "random_ws",
    "enas",
    "bossnas",
]
# The model a method retrains when the user names none.
DEFAULT_MODEL = {
    "stn": "mlp",
    "darts": "darts_net",
    "random_ws": "darts_net",
    "enas": "darts_net",
    "bossnas": "bossnas_net",
}


class SweepOptions(FlowOptions):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    KEYS: ClassVar[dict[str, str]] = {
        "method": "search",
        "num_samples": "search.num_samples",
        "max_concurrent": "search.max_concurrent",
        "data": "data",
        "model": "model",
        "experiment": "experiment",
        "epochs": "train.epochs",
        "num_workers": "train.num_workers",
        "seed": "seed",
        "tracking": "tracking",
        "tracking_uri": "tracking.uri",
        "history": "search.history",
        "alert_drop": "search.alert_drop",
    }

    method: SearchMethod | None = Field(None, description="search method (conf/search)")
    num_samples: int | None = Field(None, ge=1, description="trials")
    max_concurrent: int | None = Field(None, ge=1, description="trials at once")
    data: str | None = Field(None, description="data source config (conf/data)")
    model: str | None = Field(None, description="model config (conf/model)")
    experiment: str | None = Field(None, description="experiment preset (conf/experiment)")
    epochs: int | None = Field(None, ge=1, description="epochs per trial and for the retrain")
    num_workers: int | None = Field(None, ge=1, description="Ray Train workers per trial")
    seed: int | None = None
    tracking: Literal["none", "mlflow"] | None = Field(None, description="log to MLflow")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (tracking=mlflow)")
    history: bool | None = Field(
        None, description="append the night to <run.root>/sweep/history.parquet and history.html"
    )
    alert_drop: float | None = Field(
        None, ge=0, description="fail when test accuracy drops more than this below the best night"
    )


class SweepResult(RunResult):
    """What a finished sweep returns (also printed by the CLI): the run, the search method and
    the best configuration it found."""

    method: str
    best_config: dict


def compose_sweep(overrides: list[str]):
    """Compose the config of a sweep (once): ``search=asha`` unless chosen, and the method's
    default model unless one is chosen. Each ``conf/search/<method>.yaml`` sets
    ``search.method=<method>``, so the chosen option names the method."""
    method = next(
        (o.split("=", 1)[1] for o in overrides if override_key(o) == "search"),
        None,
    )
    if method is None:
        method, overrides = DEFAULT_SEARCH, [f"search={DEFAULT_SEARCH}", *overrides]
    if method in DEFAULT_MODEL and not any(o.startswith("model=") for o in overrides):
        overrides = [f"model={DEFAULT_MODEL[method]}", *overrides]
    return compose(overrides)


def sweep_config(overrides: list[str], resume: bool = False):
    """The sweep's config (one composition); resuming, the interrupted sweep's saved config with
    the overrides of :data:`RESUME_CHANGEABLE` applied (:func:`flows.run.resumed_config`)."""
    cfg = compose_sweep(overrides)
    return resumed_config("sweep", cfg, overrides, RESUME_CHANGEABLE)[0] if resume else cfg


@flow(name="sweep", log_prints=True)
@with_run_status
def sweep(
    overrides: list[str] | None = None,
    options: SweepOptions | None = None,
    resume: bool = False,
) -> SweepResult:
    """Search, retrain the best, evaluate, explain and report.

    Args:
        overrides: Hydra overrides, e.g. ``["search=pbt", "model=mlp"]``; applied after
            ``options``.
        options: the common knobs as a typed form (the Prefect UI renders it).
        resume: continue the interrupted sweep in the run folder of ``run.id``, in its saved
            config (:func:`sweep_config`); finished trials are kept, unfinished ones resume
            from their checkpoints.
    """
    from components.pruning.lottery import lottery_headline
    from components.search.best import search_files, search_summary

    cfg = sweep_config(all_overrides(options, overrides), resume)
    settings, search = to_settings(cfg), to_search_settings(cfg)
    method = search.sweep.method
    _check_storage(settings, search)
    _check_resources(settings, search)
    _check_ssl(cfg, settings, search)
    prune_cfg = _check_prune(cfg, settings, search)
    _check_budget(settings, search, prune_cfg)
    _check_space(settings, search, spec=None)  # train.* values, before the data is read
    _check_resume(settings, resume)  # before anything is ingested or written
    if settings.run.id is None and not resume:  # fixed now: meta.json records its experiment
        settings = replace(settings, run=replace(settings.run, id=new_run_id()))
    if not resume:
        check_run_dir_free(settings.run.root, "sweep", settings.run.id)
    # bad data fails before the run folder exists
    dataset = ingest_task(settings.data, settings.run.cache_dir)
    spec = settings.model_spec(dataset.meta)
    _check_data(search, dataset.path)
    _warn_unweighted_search(search.sweep.method, settings.train)
    _check_metrics(settings, search, dataset)
    _check_space(settings, search, spec=spec)  # and model.* values, for the data's shape
    ssl_cfg = stage_config(cfg, spec)  # ssl=<objective>
    _check_capacity(settings, search, ssl_cfg)
    resume_dir = Path(settings.run.root) / "sweep" / settings.run.id if resume else None
    experiment = {META_EXPERIMENT: _experiment(settings)}
    run = open_run("sweep", settings, cfg, resume_dir=resume_dir, meta_extra=experiment)

    outcome = search_task(
        dataset.path,
        spec,
        settings.train,
        search,
        _storage(settings, run.run_dir.name),
        settings.run,
        settings.data.augment,
        resume,
        ssl=ssl_cfg,
        prune=prune_cfg,
    )
    for name, payload in search_files(outcome).items():  # kept should the retrain fail
        write_json(run.run_dir / name, payload)
    summary = search_summary(method, outcome, retrained=search.retrain)
    headline = {"trials": len(outcome.trials), "best_val_loss": outcome.best_metrics["val_loss"]}
    headline |= _selection_headline(search.sweep, outcome)
    trained, test, explanations, ssl, lottery = None, {}, None, None, None
    if search.retrain:
        spec, train = best_model_task(spec, settings.train, method, outcome)
        if ssl_cfg is not None:  # the pipeline's stage, with the best trial's ssl.* values
            best_ssl = apply_ssl_overrides(ssl_cfg, outcome.best_config)
            ssl = pretrain_stage_task(
                dataset.path, ssl_source(spec), best_ssl, settings.run, run.run_dir
            )
            spec = replace(spec, encoder_from=ssl["checkpoint"])
        started = time.perf_counter()
        if prune_cfg is None:
            trained = train_task(
                dataset.path, spec, train, run.run_dir, settings.run, settings.data.augment
            )
        else:
            config = apply_prune_overrides(prune_cfg, outcome.best_config)
            trained, lottery = _retrain_lottery(dataset.path, spec, train, config, settings, run)
            headline |= lottery_headline(lottery["rounds"])
        train_seconds = time.perf_counter() - started  # explain.budget_s=auto keeps within it
        test = evaluate_task(trained.best_checkpoint, dataset.path, settings.seed)
        explanations = explain_task(
            trained.best_checkpoint,
            dataset.path,
            settings.explain,
            settings.seed,
            train_seconds=train_seconds,
        )
        headline |= headline_metrics(test, trained) | explanation_headline(explanations)
    history = trained.history if trained is not None else []
    report = report_data(
        run,
        dataset,
        title=f"sennflow sweep ({method}): {spec.name} on {settings.data.source}",
        headline=headline,
        metrics=test,
        history=history,
        explanations=explanations,
        search=summary,
        training=training_summary(trained) if trained is not None else None,
        ssl=ssl,
        prune=lottery,
        circuit=circuit_task(trained.best_checkpoint) if trained is not None else None,
    )
    model = trained.best_checkpoint if trained is not None else None
    done = finish_run(
        run,
        settings,
        report,
        metrics={"test": test, "search": summary}
        | ({"train": {"wall_s": round(train_seconds, 3)}} if trained is not None else {}),
        tracked=TrackedModel(history, model, outcome.trials),
        files=({"prune.json": lottery} if lottery else {}) | check_files(explanations),
    )
    if search.history:  # last: the run folder and its report are complete if it alerts
        night = _night(run, settings, dataset, method, spec, outcome, done)
        history_task(Path(settings.run.root) / "sweep", night, search.alert_drop)
    return SweepResult(**done.model_dump(), method=method, best_config=outcome.best_config)


def _retrain_lottery(dataset_path, spec, train, config, settings, run):
    """Lottery rounds with ``config`` (the best trial's ``prune.*`` values), each a Ray Train
    fit as ``sennflow prune`` runs them, into ``<run>/prune``: the last ticket's training
    outcome and the rounds' report section."""
    from components.pruning.lottery import lottery_section
    from components.pruning.round_trainers import ticket_outcome
    from tasks.prune import prune_task

    folder = run.run_dir / "prune"
    records = prune_task(dataset_path, spec, train, config, settings.run, folder)
    return ticket_outcome(folder, config.rounds), lottery_section(spec, config, records)


def _night(run, settings, dataset, method: str, spec, outcome, done):
    """The finished sweep as a row of the nightly history."""
    from components.search.history import Night

    return Night(
        run_id=run.run_dir.name,
        method=method,
        model=spec.name,
        dataset=settings.data.source,
        dataset_fingerprint=str(dataset.meta.get("fingerprint", "")),
        best_config=outcome.best_config,
        headline=done.headline,
    )


def _check_resume(settings, resume: bool) -> None:
    """``--resume`` continues only a sweep whose folder and Tune state are where and as they were
    (its config is the folder's: :func:`sweep_config`); without it, a Tune experiment left under
    ``run.id`` is refused (Tune would silently continue it, also when ``ray.storage_path``
    outlived the run folder)."""
    from components.search.tune_sweep import existing_experiment, existing_experiment_message

    if resume:
        _check_not_moved(Path(settings.run.root) / "sweep" / settings.run.id, _experiment(settings))
        _check_tune_state(settings)
        return
    run_id = settings.run.id
    if run_id is not None and (experiment := existing_experiment(_storage(settings, run_id))):
        raise ConfigError(existing_experiment_message(experiment))


# The key of a sweep's meta.json that says where its Tune experiment was started.
META_EXPERIMENT = "tune_experiment"
# What a sweep's ``--resume`` may change: where the run folders and Ray are, not the search
# (``run.id`` and ``run.root`` locate the folder; a sweep started without ``run.id`` saved none).
RESUME_CHANGEABLE = ("run.id", "run.root", "ray.address", "ray.num_cpus")


def _experiment(settings) -> str:
    from components.search.tune_sweep import experiment_path

    return experiment_path(_storage(settings, settings.run.id))


def _check_not_moved(run_dir: Path, experiment: str) -> None:
    """Refuse a sweep whose Tune experiment was moved (its run root renamed, copied elsewhere):
    Tune's saved search state keeps the old folder, and the trials it has yet to start would
    be written there. A sweep whose ``meta.json`` has no ``tune_experiment`` (an older
    sennflow's) is not checked."""
    started = (read_run_json(run_dir / "meta.json") or {}).get(META_EXPERIMENT)
    if started is not None and started != experiment:
        raise ConfigError(
            f"cannot resume {run_dir}: its Tune experiment was started in {started} and is now "
            f"in {experiment}; Ray Tune's saved search state holds the old folder and would "
            "start the remaining trials there. Move it back to resume it, or start a new sweep "
            "(another run.id)"
        )


def _check_tune_state(settings) -> None:
    from components.search.storage import check_state
    from components.search.tune_sweep import existing_experiment

    if (experiment := existing_experiment(_storage(settings, settings.run.id))) is not None:
        try:
            check_state(experiment)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _storage(settings, run_id: str) -> Path | str:
    """Where Tune keeps the sweep of ``run_id``: its run folder, or its own folder under
    ``ray.storage_path`` (the experiment is the ``sweep`` folder inside)."""
    if settings.run.ray_storage_path:
        return join(settings.run.ray_storage_path, "sweep", run_id)
    return Path(settings.run.root) / "sweep" / run_id


def _check_storage(settings, search) -> None:
    from components.search.best import check_retrain_model
    from components.search.tune_sweep import check_storage

    try:
        run, workers = settings.run, settings.train.num_workers
        check_storage(run.ray_storage_path, search.sweep.method, workers)
        check_retrain_model(search.sweep.method, settings.model.name)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _selection_headline(sweep, outcome) -> dict:
    """The retrained trial's values of the metric(s) it was chosen by (other than val_loss),
    and the size of the Pareto front of a multi-objective sweep."""
    prefix = "picked" if sweep.objectives else "best"
    headline = {
        f"{prefix}_{name}": outcome.best_metrics.get(name)
        for name, _ in sweep.selection
        if name != "val_loss"
    }
    if outcome.pareto:
        headline["pareto_front"] = len(outcome.pareto["front"])
    return headline


def _check_metrics(settings, search, dataset) -> None:
    """The trials can compute the metric(s) the sweep ranks by (a part-prototype model on part
    masks for ``prototype_consistency``; single-process trials for the extra metrics)."""
    from components.search.tune_sweep import check_metrics

    sweep = search.sweep
    needs_model = "prototype_consistency" in {name for name, _ in sweep.selection}
    model = settings.model_spec(dataset.meta).build() if needs_model else None
    try:
        check_metrics(sweep, settings.train.num_workers, model, dataset.path)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _check_space(settings, search, spec) -> None:
    """Every value a ``train.*`` (and, given the model ``spec`` the trials train, ``model.*``)
    dimension can draw is one its settings accept
    (:func:`components.search.space.check_space_values`)."""
    from components.search.space import check_space_values
    from components.search.sweep_config import HYPERPARAMETER_METHODS

    trains_spec = search.sweep.method in HYPERPARAMETER_METHODS
    try:
        check_space_values(search.space, settings.train, spec if trains_spec else None)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _check_ssl(cfg, settings, search) -> None:
    """``ssl.*`` dimensions need an ``ssl=`` group, and pre-training trials (before anything
    runs: :func:`components.search.space.check_ssl_search`)."""
    from components.search.space import check_ssl_search

    try:
        ssl_chosen = cfg.get("ssl") is not None
        method, workers = search.sweep.method, settings.train.num_workers
        check_ssl_search(search.space, method, ssl_chosen, workers)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _check_prune(cfg, settings, search):
    """The ``prune`` group's :class:`PruneConfig` (None without one), once ``prune.*``
    dimensions, the ``remaining`` metric and the method suit lottery trials
    (:func:`components.search.space.check_prune_search`); a ``ConfigError`` names what does
    not."""
    from components.search.space import check_prune_search

    chosen = cfg.get("prune") is not None
    try:
        check_prune_search(
            search.space,
            search.sweep,
            chosen,
            cfg.get("ssl") is not None,
            settings.train.num_workers,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return prune_settings(cfg)[1] if chosen else None


def _check_budget(settings, search, prune_cfg) -> None:
    """ASHA's first rung lies within a trial's budget (epochs, or a pruning sweep's rounds)."""
    from components.search.sweep_config import check_budget

    budget, key = (
        (prune_cfg.rounds, "prune.rounds")
        if prune_cfg is not None
        else (settings.train.epochs, "train.epochs")
    )
    try:
        check_budget(search.sweep, budget, key)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _check_resources(settings, search) -> None:
    from components.search.tune_sweep import check_resources

    try:
        check_resources(search.sweep, settings.train.num_workers)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _check_capacity(settings, search, ssl_cfg) -> None:
    """Start or join Ray, and refuse a trial or a Ray Train group the cluster cannot hold before
    the run folder exists (:func:`components.search.tune_sweep.check_capacity`)."""
    from components.search.tune_sweep import check_capacity

    check_training_fits(settings, ssl=ssl_cfg)  # the retrain, and each trial's Ray Train group
    try:
        check_capacity(search.sweep, settings.train)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _warn_unweighted_search(method: str, train) -> None:
    """The weight-sharing searches train their own networks with their own loops: a
    ``train.class_weights`` weighs only the retrain there, as the log then says."""
    if train.class_weights != "none" and method in DEFAULT_MODEL:
        get_run_logger().warning(
            "train.class_weights=%s weighs the retrain only: %s searches with its own "
            "unweighted training loop",
            train.class_weights,
            method,
        )


def _check_data(search, dataset_path: Path) -> None:
    """Image datasets suit only the methods that train on them as the pipeline does."""
    from components.data.reader import load_meta
    from components.search.tune_sweep import check_data

    try:
        check_data(search.sweep.method, load_meta(dataset_path).is_image, search.stn)
    except ValueError as err:
        raise ConfigError(str(err)) from err
