"""The sweep flow: ingest -> search (Ray Tune) -> retrain the best -> evaluate -> explain -> report.

Callable from Python (``sweep(overrides=["search=asha"])``), from the CLI (``sennflow sweep``) and
from the Prefect UI (the ``nightly-sweep`` deployment in ``infra/prefect.yaml``), where
:class:`SweepOptions` renders as a form. The search method picks what is retrained:

* hyperparameter methods (``asha``, ``pbt``, ``optuna``, ``random``, ``fifo``): the configured
  model with the best trial's ``train.*`` / ``model.*`` values;
* ``stn``: the configured model (default ``mlp``) with the best STN trial's final dropout (if the
  model has a ``dropout`` parameter) and weight decay;
* ``darts`` / ``random_ws``: the best genotype as model ``darts_net`` (default), or as the backbone
  of ``protopnet`` / ``st_protopnet`` when one of those is the configured model.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from components.data.staging import join
from components.models.nas_ops import PRIMITIVES
from flows.config import ConfigError, compose, to_search_settings, to_settings, to_yaml
from flows.pipeline import (
    explanation_headline,
    headline_metrics,
    model_spec,
    options_to_overrides,
    report_data,
    training_summary,
)
from flows.run_folder import (
    check_resumable,
    create_run_dir,
    start_status,
    with_run_status,
    write_json,
    write_run_files,
)
from tasks.evaluate import evaluate_task
from tasks.explain import explain_task
from tasks.ingest import ingest_task
from tasks.report import report_task
from tasks.search import search_task
from tasks.tracking import track_task
from tasks.train import train_task

SearchMethod = Literal["asha", "pbt", "optuna", "random", "stn", "darts", "random_ws"]
DEFAULT_METHOD = "asha"
# The model a method retrains when the user names none.
DEFAULT_MODEL = {"stn": "mlp", "darts": "darts_net", "random_ws": "darts_net"}
GENOTYPE_BACKBONE_MODELS = ("protopnet", "st_protopnet")


class SweepOptions(BaseModel):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

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

    def to_overrides(self) -> list[str]:
        """The Hydra overrides these options stand for."""
        keys = {
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
        }
        return options_to_overrides(self, keys)


class SweepResult(BaseModel):
    """What a finished sweep returns (also printed by the CLI)."""

    run_dir: str
    report: str
    method: str
    best_config: dict
    headline: dict[str, float | int | str]


def compose_sweep(overrides: list[str]):
    """Compose the config of a sweep: ``search=asha`` unless chosen, and the method's default
    model unless one is chosen."""
    if not any(o.split("=")[0].lstrip("+~") == "search" for o in overrides):
        overrides = [f"search={DEFAULT_METHOD}", *overrides]
    method = compose(overrides).search.method
    if method in DEFAULT_MODEL and not any(o.startswith("model=") for o in overrides):
        overrides = [f"model={DEFAULT_MODEL[method]}", *overrides]
    return compose(overrides)


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
        resume: continue the interrupted sweep in the run folder of ``run.id`` (its config must
            match); finished trials are kept, unfinished ones resume from their checkpoints.
    """
    cfg = compose_sweep([*(options.to_overrides() if options else []), *(overrides or [])])
    s, search = to_settings(cfg), to_search_settings(cfg)
    _check_storage(s, search)
    _check_resume(s, to_yaml(cfg), resume)  # before anything is ingested or written
    dataset = ingest_task(s.data, s.run.cache_dir)  # bad data fails before the run folder exists
    _check_data(search, dataset.path)
    run_dir = _run_dir(s, resume)
    start_status(run_dir, "sweep", run_root=s.run.root)
    logger = get_run_logger()
    logger.info("run folder %s", run_dir)
    if resume:  # keep the interrupted run's provenance
        meta = json.loads((run_dir / "meta.json").read_text())
    else:
        meta = write_run_files(
            run_dir, config_yaml=to_yaml(cfg), seed=s.seed, use_gpu=s.train.use_gpu
        )

    spec = model_spec(s, dataset.meta)
    storage = _storage(s, run_dir.name)
    outcome = search_task(
        dataset.path, spec, s.train, search, storage, s.run, s.data.augment, resume
    )
    _write_search_files(run_dir, outcome)
    report_search = _report_search(search.sweep.method, outcome)
    headline = {"trials": len(outcome.trials), "best_val_loss": outcome.best_metrics["val_loss"]}
    trained, test, explanations = None, {}, None
    if search.retrain:
        spec, train = _best_model(s, spec, search.sweep.method, outcome)
        logger.info("retraining the best configuration: %s %s", spec.name, _short(spec.kwargs))
        started = time.perf_counter()
        trained = train_task(dataset.path, spec, train, run_dir, s.run, s.data.augment)
        train_seconds = time.perf_counter() - started  # explain.budget_s=auto keeps within it
        test = evaluate_task(trained.best_checkpoint, dataset.path, s.seed)
        explanations = explain_task(
            trained.best_checkpoint, dataset.path, s.explain, s.seed, train_seconds=train_seconds
        )
        headline |= headline_metrics(test, trained) | explanation_headline(explanations)
    write_json(run_dir / "metrics.json", {"test": test, "search": report_search})
    history = trained.history if trained is not None else []
    data = report_data(s, run_dir, cfg, meta, dataset, history, test, explanations, headline)
    data.title = f"sennflow sweep ({search.sweep.method}): {spec.name} on {s.data.source}"
    data.search = report_search
    data.training = training_summary(trained) if trained is not None else None
    report = report_task(run_dir, data)
    if s.tracking.enabled:
        model = trained.best_checkpoint if trained is not None else None
        track_task(
            s.tracking, s.run.root, run_dir, "sweep", history, headline, model, outcome.trials
        )
    return SweepResult(
        run_dir=str(run_dir),
        report=str(report),
        method=search.sweep.method,
        best_config=outcome.best_config,
        headline=headline,
    )


def _run_dir(s, resume: bool) -> Path:
    """A new run folder, or the resumed sweep's (checked by :func:`_check_resume`)."""
    if resume:
        return Path(s.run.root) / "sweep" / s.run.id
    return create_run_dir(s.run.root, "sweep", s.run.id)


def _check_resume(s, config_yaml: str, resume: bool) -> None:
    """``--resume`` continues only an unfinished sweep of the same config; without it, a Tune
    experiment left under ``run.id`` is refused (Tune would silently continue it, also when
    ``ray.storage_path`` outlived the run folder)."""
    from components.search.tune_sweep import existing_experiment, existing_experiment_message

    if resume:
        _check_resumable(s, config_yaml)
    elif s.run.id is not None and (experiment := existing_experiment(_storage(s, s.run.id))):
        raise ConfigError(existing_experiment_message(experiment))


def _check_resumable(s, config_yaml: str) -> None:
    if s.run.id is None:
        raise ConfigError("resuming a sweep needs run.id=<id of the interrupted sweep>")
    run_dir = Path(s.run.root) / "sweep" / s.run.id
    saved = run_dir / "config.yaml"
    if not saved.exists():
        raise ConfigError(f"cannot resume: {saved} does not exist")
    if saved.read_text() != config_yaml:
        raise ConfigError(
            f"cannot resume {run_dir}: its config.yaml differs from this sweep's config; "
            "pass the same overrides as the interrupted run"
        )
    check_resumable(run_dir)  # refuses a finished sweep, and one still running


def _storage(s, run_id: str) -> Path | str:
    """Where Tune keeps the sweep of ``run_id``: its run folder, or its own folder under
    ``ray.storage_path`` (the experiment is the ``sweep`` folder inside)."""
    if s.run.ray_storage_path:
        return join(s.run.ray_storage_path, "sweep", run_id)
    return Path(s.run.root) / "sweep" / run_id


def _check_storage(s, search) -> None:
    from components.search.tune_sweep import check_storage

    try:
        check_storage(s.run.ray_storage_path, search.sweep.method, s.train.num_workers)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _check_data(search, dataset_path: Path) -> None:
    """Image datasets suit only the methods that train on them as the pipeline does."""
    from components.data.reader import load_meta
    from components.search.tune_sweep import check_data

    try:
        check_data(search.sweep.method, load_meta(dataset_path).is_image)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _write_search_files(run_dir: Path, outcome) -> None:
    write_json(
        run_dir / "search.json",
        {
            "best_config": outcome.best_config,
            "best_metrics": outcome.best_metrics,
            "best_checkpoint": outcome.best_checkpoint,
            "experiment_path": outcome.experiment_path,
            "trials": outcome.trials,
        },
    )
    if outcome.genotype is not None:
        write_json(run_dir / "genotype.json", outcome.genotype)
    if outcome.schedules:
        write_json(run_dir / "stn_schedules.json", outcome.schedules)


def _report_search(method: str, outcome) -> dict:
    """The report's ``search`` section (see ``components.report``)."""
    best = next((t for t in outcome.trials if t["config"] == outcome.best_config), {})
    return {
        "method": method,
        "metric": "val_loss",
        "mode": "min",
        "experiment_path": outcome.experiment_path,
        "trials": outcome.trials,
        "best": {
            "trial": best.get("trial"),
            "config": outcome.best_config,
            "val_loss": outcome.best_metrics.get("val_loss"),
            "val_accuracy": outcome.best_metrics.get("val_accuracy"),
        },
        "schedules": outcome.schedules,
        "genotype": outcome.genotype,
        "alphas": outcome.alphas,
        "primitives": list(PRIMITIVES),
    }


def _best_model(s, spec, method: str, outcome):
    """The model spec and training config that retrain the sweep's best result."""
    from components.search.space import group_overrides
    from components.training.config import TrainConfig

    train = s.train
    if method == "stn":
        return _stn_best(spec, train, outcome)
    if method in ("darts", "random_ws"):
        key = "backbone_genotype" if spec.name in GENOTYPE_BACKBONE_MODELS else "genotype"
        return replace(spec, kwargs={**spec.kwargs, key: outcome.genotype}), train
    kwargs = {**spec.kwargs, **group_overrides(outcome.best_config, "model")}
    values = {**train.__dict__, **group_overrides(outcome.best_config, "train")}
    return replace(spec, kwargs=kwargs), TrainConfig(**values)


def _stn_best(spec, train, outcome):
    """The best STN trial's final hyperparameters applied to the configured model.

    STN's penalty is ``wd * ||w||^2``; torch's Adam/SGD ``weight_decay`` adds ``wd * w`` to the
    gradient (``wd / 2 * ||w||^2``), hence the factor 2. Input noise and shift are not part of
    the pipeline's training and are only reported.
    """
    from components.training.checkpoint import ModelSpecError

    best = next(t for t in outcome.trials if t["config"] == outcome.best_config)
    final = outcome.schedules[best["trial"]][-1]
    train = replace(train, weight_decay=2 * final["weight_decay"])
    with_dropout = replace(spec, kwargs={**spec.kwargs, "dropout": final["dropout"]})
    try:
        with_dropout.build()
    except ModelSpecError:
        return spec, train  # the model has no dropout parameter
    return with_dropout, train


def _short(kwargs: dict) -> str:
    return str({k: ("<genotype>" if "genotype" in k else v) for k, v in kwargs.items()})
