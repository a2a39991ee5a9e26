"""The pretrain flow: ingest -> self-supervised pre-training of a model's encoder on Ray Train ->
linear and k-NN probes -> report.

Callable from Python (``pretrain(overrides=["ssl=directpred", "model=cnn"])``), from the CLI
(``sennflow pretrain ssl=barlow_twins|directpred|jepa``) and from the Prefect UI, where
:class:`PretrainOptions` renders as a form. The labels of the training split are never used
for training; the probes read them (and the test split) to score the frozen encoder.

The run folder holds the encoder as ``checkpoints/best`` (an SSL checkpoint folder:
:mod:`components.ssl.checkpoint`), which ``+model.params.pretrained=<run>/checkpoints/best``
loads into the same model's encoder in ``sennflow run``; ``ssl.json`` (history and probes),
``metrics.json`` and the report.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from pydantic import Field

from flows.config import ConfigError, compose_with_defaults, to_group_config, to_settings
from flows.run import (
    FlowOptions,
    RunResult,
    all_overrides,
    check_training_fits,
    finish_run,
    open_run,
    report_data,
)
from flows.run_folder import check_run_dir_free, with_run_status
from tasks.ingest import ingest_task

DEFAULT_SSL = "barlow_twins"


class PretrainOptions(FlowOptions):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    ssl: Literal["barlow_twins", "directpred", "jepa"] | None = Field(
        None, description="the self-supervised objective (conf/ssl)"
    )
    projector_width: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=2)
    data: str | None = Field(None, description="data source config (conf/data)")
    model: str | None = Field(None, description="model whose encoder is pre-trained (conf/model)")
    seed: int | None = None


PretrainOptions.KEYS = {
    **{name: f"ssl.{name}" for name in ("projector_width", "epochs", "batch_size")},
    "ssl": "ssl",
    "data": "data",
    "model": "model",
    "seed": "seed",
}


class PretrainResult(RunResult):
    """What a pretrain run returns: run folder, report, headline (the CLI prints it)."""


def compose_pretrain(overrides: list[str]):
    """The config of a pretrain run: ``ssl=barlow_twins`` unless chosen."""
    return compose_with_defaults(overrides, {"ssl": DEFAULT_SSL})


def ssl_config(cfg):
    """The composed ``ssl`` group as an ``SSLConfig`` (``ConfigError`` names the bad key)."""
    from components.ssl.config import SSLConfig

    return to_group_config(cfg, "ssl", SSLConfig, default=DEFAULT_SSL)


def ssl_source(spec):
    """The ``SourceModel`` whose encoder pre-training trains: ``spec`` as the run builds it."""
    from components.training.ssl_ray import SourceModel

    return SourceModel(spec.name, spec.input_shape, spec.num_classes, spec.tiny, spec.kwargs)


def check_pretrainable(spec, config) -> None:
    """``ConfigError`` unless ``spec``'s encoder can be pre-trained with ``config``."""
    from components.ssl.encoders import EncoderError

    source = ssl_source(spec)
    try:
        source.learner(config)
    except (EncoderError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"model={spec.name} cannot be pre-trained: {err}") from err


def stage_config(cfg, spec):
    """The ``SSLConfig`` of ``sennflow run|sweep ssl=<objective>`` (pre-training as a stage before
    training), or None without an ``ssl`` group. ``ConfigError`` for a bad ``ssl`` key, a model
    that cannot be pre-trained, or other starting weights (``model.params.pretrained``)."""
    if cfg.get("ssl") is None:
        return None
    pretrained = spec.encoder_from or spec.kwargs.get("pretrained")
    if pretrained:
        raise ConfigError(
            f"ssl={cfg.ssl.objective} pre-trains the encoder the run starts from, and "
            f"model.params.pretrained={pretrained} loads another: choose one"
        )
    config = ssl_config(cfg)
    check_pretrainable(spec, config)
    return config


@flow(name="pretrain", log_prints=True)
@with_run_status
def pretrain(
    overrides: list[str] | None = None, options: PretrainOptions | None = None
) -> PretrainResult:
    """Pre-train the configured model's encoder without labels and probe it.

    Args:
        overrides: Hydra overrides, e.g. ``["ssl=directpred", "ssl.epochs=50"]``; applied after
            ``options``.
        options: the common knobs as a typed form (the Prefect UI renders it).
    """
    from tasks.pretrain import pretrain_task

    cfg = compose_pretrain(all_overrides(options, overrides))
    settings = to_settings(cfg)
    check_run_dir_free(settings.run.root, "pretrain", settings.run.id)
    config = ssl_config(cfg)
    dataset = ingest_task(settings.data, settings.run.cache_dir)
    spec = settings.model_spec(dataset.meta)
    source = ssl_source(spec)
    check_pretrainable(spec, config)
    check_training_fits(settings, train=False, ssl=config)
    run = open_run("pretrain", settings, cfg)

    ssl = pretrain_task(dataset.path, source, config, settings.run, run.run_dir)
    probes = ssl["probes"]
    headline = {
        "linear_probe": probes["linear_probe"],
        "knn_probe": probes["knn_probe"],
        "random_init_linear_probe": probes["random_init_linear_probe"],
        "test_effective_rank": probes["test_effective_rank"],
    }
    report = report_data(
        run,
        dataset,
        title=f"sennflow pretrain: {config.objective} on {spec.name}, {settings.data.source}",
        headline=headline,
        ssl=ssl,
    )
    files = {"ssl.json": {k: v for k, v in ssl.items() if k != "cross_correlation"}}
    done = finish_run(run, settings, report, metrics={"headline": headline}, files=files)
    return PretrainResult(**done.model_dump())
