"""The pipeline flow: ingest -> train (Ray Train) -> evaluate -> explain -> report.

With ``ssl=barlow_twins|directpred|jepa`` (``sennflow run ssl=...``) a self-supervised stage
pre-trains the model's encoder on the training split first (Ray Train, as ``sennflow pretrain``
does) into ``<run>/ssl/checkpoints/best``, and training starts from it.

Callable from Python (``pipeline(overrides=["model=mlp"])``), from the CLI (``sennflow run``) and
from the Prefect UI, where :class:`PipelineOptions` renders as a form.

A run that was interrupted, killed or failed is resumed in its own run folder
(``pipeline(overrides=["run.id=<id>"], resume=True)``, ``sennflow run --resume run.id=<id>``):
its saved ``config.yaml`` is the config, training continues from the newest checkpoint Ray Train
registered in the folder, then evaluate, explain and report run as usual.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import ClassVar, Literal

from prefect import flow
from pydantic import Field

from flows.config import ConfigError, compose, to_settings
from flows.preflight import check_inputs
from flows.pretrain import ssl_source, stage_config
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
from flows.run_folder import check_run_dir_free, with_run_status
from tasks.evaluate import evaluate_task
from tasks.explain import explain_task
from tasks.ftwt import ftwt_task
from tasks.ingest import ingest_task
from tasks.pretrain import pretrain_stage_task
from tasks.report import circuit_task
from tasks.train import train_task

DataSource = Literal[
    "digits", "breast_cancer", "wine", "synthetic", "parts", "parquet", "csv", "image_folder"
]


class PipelineOptions(FlowOptions):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    KEYS: ClassVar[dict[str, str]] = {
        "data": "data",
        "data_path": "data.path",
        "image_size": "data.image_size",
        "model": "model",
        "backbone": "++model.params.backbone",
        "pretrained": "++model.params.pretrained",
        "experiment": "experiment",
        "epochs": "train.epochs",
        "num_workers": "train.num_workers",
        "use_gpu": "train.use_gpu",
        "seed": "seed",
        "tracking": "tracking",
        "tracking_uri": "tracking.uri",
    }

    data: DataSource | None = Field(None, description="data source config (conf/data)")
    data_path: str | None = Field(
        None, description="parquet/csv: a file or fsspec URL; image_folder: the folder"
    )
    image_size: int | None = Field(None, ge=8, description="image_folder: side of the crop")
    model: str | None = Field(None, description="model config (conf/model), e.g. proto_ae, mlp")
    backbone: str | None = Field(
        None, description="protopnet / st_protopnet / resnet: conv, resnet18, vgg16, ..."
    )
    pretrained: str | None = Field(
        None, description="trunk weights: a .pth/.safetensors path or e.g. IMAGENET1K_V1"
    )
    experiment: str | None = Field(None, description="experiment preset (conf/experiment)")
    epochs: int | None = Field(None, ge=1)
    num_workers: int | None = Field(None, ge=1, description="Ray Train workers")
    use_gpu: bool | None = None
    seed: int | None = None
    tracking: Literal["none", "mlflow"] | None = Field(None, description="log to MLflow")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (tracking=mlflow)")


class PipelineResult(RunResult):
    """What a finished pipeline returns (also printed by the CLI)."""


def compose_pipeline(overrides: list[str], resume: bool = False):
    """The pipeline's config (one composition) and, resuming, the run folder it continues."""
    return resume_config(overrides) if resume else (compose(overrides), None)


@flow(name="pipeline", log_prints=True)
@with_run_status
def pipeline(
    overrides: list[str] | None = None,
    options: PipelineOptions | None = None,
    resume: bool = False,
) -> PipelineResult:
    """Run ingest -> train -> evaluate -> explain -> report and return where the results are.

    Args:
        overrides: Hydra overrides, e.g. ``["model=mlp", "train.epochs=5"]``; applied after
            ``options``.
        options: the common knobs as a typed form (the Prefect UI renders it).
        resume: continue the run of ``run.id`` in its run folder (:func:`resume_config` says
            which overrides may change); a completed or still running run is refused.
    """
    cfg, resume_dir = compose_pipeline(all_overrides(options, overrides), resume)
    settings = to_settings(cfg)
    if resume_dir is None:
        check_run_dir_free(settings.run.root, "pipeline", settings.run.id)
    check_inputs(settings)  # missing files, no cluster at ray.address: before the ingest
    # bad data, a model that does not fit it or unloadable trunk weights fail before the run
    # folder exists
    dataset = ingest_task(settings.data, settings.run.cache_dir)
    spec = settings.model_spec(dataset.meta)
    model = spec.build()
    if settings.train.dynamic_pruning == "ftwt":
        check_gateable(model)
    if settings.train.self_distill == "pskd":
        check_self_distillable(model)
    check_mixup(model, settings.train)
    if settings.train.self_distill == "iterative":
        check_rounds(spec, settings.train)
    from components.training.boosted import check_final_layer
    from components.training.xnesyl import check_xnesyl

    check_final_layer(spec, settings.train)
    try:
        check_xnesyl(dataset.path, settings.train, model)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    ssl_cfg = stage_config(cfg, spec)  # ssl=<objective>: pre-train the encoder first
    check_training_fits(settings, ssl=ssl_cfg)
    run = open_run("pipeline", settings, cfg, resume_dir=resume_dir)

    ssl = None
    if ssl_cfg is not None:
        ssl = pretrain_stage_task(
            dataset.path, ssl_source(spec), ssl_cfg, settings.run, run.run_dir
        )
        spec = replace(spec, encoder_from=ssl["checkpoint"])

    started = time.perf_counter()
    outcome = train_task(
        dataset.path, spec, settings.train, run.run_dir, settings.run, settings.data.augment
    )
    train_seconds = time.perf_counter() - started  # explain.budget_s=auto: explain within this
    ftwt = None
    if settings.train.dynamic_pruning == "ftwt":
        ftwt = ftwt_task(
            outcome.best_checkpoint, dataset.path, settings.train, run.run_dir, settings.seed
        )
    test = evaluate_task(outcome.best_checkpoint, dataset.path, settings.seed)
    explanations = explain_task(
        outcome.best_checkpoint,
        dataset.path,
        settings.explain,
        settings.seed,
        train_seconds=train_seconds,
    )
    headline = {**headline_metrics(test, outcome), **explanation_headline(explanations)}
    report = report_data(
        run,
        dataset,
        title=f"sennflow pipeline: {spec.name} on {settings.data.source}",
        headline=headline,
        metrics=test,
        history=outcome.history,
        explanations=explanations,
        training=training_summary(outcome),
        ftwt=ftwt,
        ssl=ssl,
        circuit=circuit_task(outcome.best_checkpoint),
    )
    result = finish_run(
        run,
        settings,
        report,
        metrics=metrics_json(test, outcome, dataset, train_seconds),
        files=({"ftwt.json": ftwt} if ftwt else {}) | check_files(explanations),
        tracked=TrackedModel(outcome.history, outcome.best_checkpoint),
    )
    return PipelineResult(**result.model_dump())


# What ``--resume`` may change: where runs and Ray are, and how long to train.
RESUME_CHANGEABLE = ("run.", "ray.", "train.epochs")


def resume_config(overrides: list[str]):
    """The config and run folder of the interrupted pipeline run ``run.id``: its saved
    ``config.yaml`` with the overrides of :data:`RESUME_CHANGEABLE` applied
    (:func:`flows.run.resumed_config`)."""
    return resumed_config("pipeline", compose(overrides), overrides, RESUME_CHANGEABLE)


def check_gateable(model) -> None:
    """``train.dynamic_pruning=ftwt`` needs a conv trunk FTWT can gate: ``ConfigError`` if not."""
    from components.pruning.ftwt import gated_layers

    try:
        gated_layers(model)
    except ValueError as err:
        raise ConfigError(f"train.dynamic_pruning=ftwt: {err}") from err


def check_self_distillable(model, setting: str = "train.self_distill=pskd") -> None:
    """``setting`` (PS-KD, MixUp, label smoothing) trains against soft targets, so it needs a
    cross-entropy: ``ConfigError`` if the model has none."""
    try:
        model.check_soft_targets()
    except ValueError as err:
        raise ConfigError(f"{setting}: {err}") from err


def check_mixup(model, cfg) -> None:
    """``train.mixup`` / ``train.label_smoothing`` train against soft targets, and
    ``train.class_weights`` weighs the cross-entropy: ``ConfigError`` if they are on and the
    model has no cross-entropy."""
    if cfg.mixup > 0 or cfg.label_smoothing > 0:
        check_self_distillable(model, "train.mixup / train.label_smoothing")
    if cfg.class_weights != "none":
        check_self_distillable(model, f"train.class_weights={cfg.class_weights}")


def check_rounds(spec, cfg) -> None:
    """``train.self_distill=iterative``: ``ConfigError`` if this run cannot distil in rounds."""
    from components.training.self_distill_ray import check_iterative

    try:
        check_iterative(spec, cfg)
    except ValueError as err:
        raise ConfigError(f"train.self_distill=iterative: {err}") from err


def metrics_json(test: dict, outcome, dataset, train_seconds: float) -> dict:
    """``metrics.json`` of a pipeline run: test metrics, how training went (``wall_s``: the
    training stage's wall time, which ``sennflow explain`` gives a re-explanation with
    ``explain.budget_s=auto``, as the run's own explain stage had), which data."""
    return {
        "test": test,
        "train": {
            "wall_s": round(train_seconds, 3),
            "best_epoch": outcome.best_epoch,
            "best_val_loss": outcome.best_val_loss,
            "stopped_early": outcome.stopped_early,
            "resumed_at": outcome.resumed_at,
            "attempts": outcome.attempts,
            "self_distill_rounds": outcome.self_distill_rounds,
            "history": outcome.history,
        },
        "data": {
            "path": str(dataset.path),
            "cache_hit": dataset.cache_hit,
            "row_counts": dataset.meta["row_counts"],
            "dropped_rows": dataset.meta.get("dropped_rows", 0),
            "dropped_by_reason": dataset.meta.get("dropped_by_reason", {}),
        },
    }
