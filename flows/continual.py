"""The continual flow: ingest -> class-incremental stream over Ray learner actors -> report.

Callable from Python (``continual(overrides=["continual.methods=[ncm,prd]"])``), from the CLI
(``sennflow continual``) and from the Prefect UI, where :class:`ContinualOptions` renders as a
form. Every method of ``continual.methods`` is one Ray actor meeting the same stream of tasks;
the report shows each method's accuracy matrix R as a heat map and the metrics computed from it.
With ``continual.federated_clients=N`` the run adds federated continual learning: N learner
actors, each with its own stream, merging class prototypes after every task.

The run folder holds ``continual.json`` (every R, metric and learning rate), ``metrics.json``
and the report.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from prefect import flow
from pydantic import Field

from flows.config import ConfigError, compose_with_defaults, to_group_config, to_settings
from flows.run import FlowOptions, RunResult, all_overrides, finish_run, open_run, report_data
from flows.run_folder import check_run_dir_free, with_run_status
from tasks.ingest import ingest_task

Method = Literal["finetune", "joint", "ncm", "prd", "napa_vq", "protocl"]


class ContinualOptions(FlowOptions):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    KEYS: ClassVar[dict[str, str]] = {
        "methods": "continual.methods",
        "num_tasks": "continual.num_tasks",
        "federated_clients": "continual.federated_clients",
        "epochs": "continual.learner.epochs",
        "data": "data",
        "seed": "seed",
    }

    methods: list[Method] | None = Field(None, description="methods to compare")
    num_tasks: int | None = Field(None, ge=1, description="tasks of the stream")
    federated_clients: int | None = Field(None, ge=0, description="> 0: federated continual")
    epochs: int | None = Field(None, ge=1, description="passes over each task")
    data: str | None = Field(None, description="data source config (conf/data)")
    seed: int | None = None


class ContinualResult(RunResult):
    """What a continual run returns: run folder, report, headline (the CLI prints it)."""


def compose_continual(overrides: list[str]):
    """The config of a continual run: ``continual=default`` unless chosen."""
    return compose_with_defaults(overrides, {"continual": "default"})


@flow(name="continual", log_prints=True)
@with_run_status
def continual(
    overrides: list[str] | None = None, options: ContinualOptions | None = None
) -> ContinualResult:
    """Run every continual method through the same class-incremental stream and report.

    Args:
        overrides: Hydra overrides, e.g. ``["continual.methods=[ncm,prd]"]``; applied after
            ``options``.
        options: the common knobs as a typed form (the Prefect UI renders it).
    """
    from components.continual.config import ContinualConfig
    from components.continual.experiment import StreamError, check_stream, continual_headline
    from components.federated.client import check_embedding
    from components.ssl.checkpoint import SSLCheckpointError
    from tasks.continual import continual_task

    cfg = compose_continual(all_overrides(options, overrides))
    settings = to_settings(cfg)
    check_run_dir_free(settings.run.root, "continual", settings.run.id)
    config = to_group_config(cfg, "continual", ContinualConfig)
    dataset = ingest_task(settings.data, settings.run.cache_dir)
    try:
        check_stream(dataset.path, config)
        if config.federated_embedding and config.federated_clients:
            check_embedding(
                config.federated_embedding,
                dataset.meta.feature_shape,
                key="continual.federated_embedding",
            )
    except (StreamError, SSLCheckpointError) as err:
        raise ConfigError(str(err)) from err
    run = open_run("continual", settings, cfg)

    result = continual_task(dataset.path, config, settings.run)
    result["dataset"] = settings.data.source
    headline = continual_headline(result)
    report = report_data(
        run,
        dataset,
        title=f"sennflow continual: {config.num_tasks} tasks of {settings.data.source}",
        headline=headline,
        continual=result,
    )
    files = {"continual.json": result}
    done = finish_run(run, settings, report, metrics={"headline": headline}, files=files)
    return ContinualResult(**done.model_dump())
