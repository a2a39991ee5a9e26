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

from typing import Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.config import ConfigError, compose_with_defaults, to_group_config, to_settings, to_yaml
from flows.pipeline import PipelineResult, options_to_overrides, report_data
from flows.run_folder import (
    create_run_dir,
    start_status,
    with_run_status,
    write_json,
    write_run_files,
)
from tasks.ingest import ingest_task
from tasks.report import report_task

Method = Literal["finetune", "joint", "ncm", "prd", "napa_vq", "protocl"]


class ContinualOptions(BaseModel):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    methods: list[Method] | None = Field(None, description="methods to compare")
    num_tasks: int | None = Field(None, ge=1, description="tasks of the stream")
    federated_clients: int | None = Field(None, ge=0, description="> 0: federated continual")
    epochs: int | None = Field(None, ge=1, description="passes over each task")
    data: str | None = Field(None, description="data source config (conf/data)")
    seed: int | None = None

    def to_overrides(self) -> list[str]:
        """The Hydra overrides these options stand for."""
        keys = {
            "methods": "continual.methods",
            "num_tasks": "continual.num_tasks",
            "federated_clients": "continual.federated_clients",
            "epochs": "continual.learner.epochs",
            "data": "data",
            "seed": "seed",
        }
        return options_to_overrides(self, keys)


class ContinualResult(PipelineResult):
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
    from tasks.continual import continual_task

    cfg = compose_continual([*(options.to_overrides() if options else []), *(overrides or [])])
    s = to_settings(cfg)
    config = to_group_config(cfg, "continual", ContinualConfig)
    dataset = ingest_task(s.data, s.run.cache_dir)
    check_stream(dataset.path, config)
    run_dir = create_run_dir(s.run.root, "continual", s.run.id)
    start_status(run_dir, "continual", run_root=s.run.root)
    get_run_logger().info("run folder %s", run_dir)
    meta = write_run_files(run_dir, config_yaml=to_yaml(cfg), seed=s.seed, use_gpu=False)
    result = continual_task(dataset.path, config, s.run)
    result["dataset"] = s.data.source
    headline = headline_metrics(result)
    write_json(run_dir / "continual.json", result)
    write_json(run_dir / "metrics.json", {"headline": headline})
    data = report_data(s, run_dir, cfg, meta, dataset, [], {}, None, headline)
    data.title = f"sennflow continual: {config.num_tasks} tasks of {s.data.source}"
    data.continual = result
    report = report_task(run_dir, data)
    return ContinualResult(run_dir=str(run_dir), report=str(report), headline=headline)


def check_stream(dataset_path, config) -> None:
    """Fail before anything is written when the dataset's classes do not fit the stream, when
    the first task is too short for a method's warm-up, cool-down and annealing, or when an
    image dataset is too large to hold in memory."""
    import math

    from components.continual.scenarios import class_incremental
    from components.data.decoded_memory import check_decoded_size
    from components.data.reader import load_meta, read_labels
    from tasks.continual import HELD_SPLITS

    check_decoded_size(dataset_path, HELD_SPLITS, "continual")
    y = read_labels(dataset_path, "train")
    try:
        tasks = class_incremental(y, config.num_tasks, classes_per_task=config.classes_per_task)
    except ValueError as err:
        raise ConfigError(f"continual.num_tasks / continual.classes_per_task: {err}") from err
    num_features, num_classes = load_meta(dataset_path).num_features, int(y.max()) + 1
    for method in config.methods:
        c = config.learner_config(method, num_features, num_classes)
        steps = c.epochs * math.ceil(len(tasks[0]) / c.batch_size)
        needed = c.warmup_steps + c.cooldown_steps + c.anneal_steps + 1
        if steps < needed:
            raise ConfigError(
                f"continual.learner: for {method}, the first task ({len(tasks[0])} samples, "
                f"{steps} steps at epochs={c.epochs}, batch_size={c.batch_size}) is shorter than "
                f"warmup_steps + cooldown_steps + anneal_steps + 1 = {needed}; raise "
                "continual.learner.epochs or lower those steps"
            )


def headline_metrics(result: dict) -> dict:
    """Per method: final average accuracy and forgetting; the merged federated accuracy."""
    headline: dict = {}
    for method, run in result["methods"].items():
        headline[f"{method}_average_accuracy"] = run["summary"]["average_accuracy"]
        headline[f"{method}_forgetting"] = run["summary"]["forgetting"]
    if result.get("federated"):
        headline["federated_merged_average_accuracy"] = result["federated"]["summary_merged"][
            "average_accuracy"
        ]
    return headline
