"""The federated flow: ingest -> federated rounds on Ray client actors (per strategy) -> report.

Callable from Python (``federated(overrides=["federated.rounds=10"])``), from the CLI
(``sennflow federated``) and from the Prefect UI, where :class:`FederatedOptions` renders as a
form. Every strategy of ``federated.strategies`` runs over the same partition of the training
split and the same client sampling; the report compares their accuracy per round, per-client
accuracy and bytes per round, and lists every dropped or rejected client.

The run folder holds ``federated.json`` (every round and fault), ``metrics.json``, the final
global state of each strategy as ``federated/<strategy>.safetensors`` and the report.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from flows.config import ConfigError, compose_with_defaults, to_group_config, to_settings, to_yaml
from flows.pipeline import PipelineResult, model_spec, options_to_overrides, report_data
from flows.run_folder import (
    create_run_dir,
    start_status,
    with_run_status,
    write_json,
    write_run_files,
)
from tasks.ingest import ingest_task
from tasks.report import report_task

# The model clients build when the user names none: FedAvg then trains the MLP, and prototype
# averaging embeds with the standardised input (the MLP has no encoder).
DEFAULT_MODEL = "mlp"
Strategy = Literal["prototypes", "fedavg", "fedprox"]


class FederatedOptions(BaseModel):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    strategies: list[Strategy] | None = Field(None, description="strategies to compare")
    partition: Literal["iid", "dirichlet", "disjoint_classes"] | None = None
    num_clients: int | None = Field(None, ge=1)
    rounds: int | None = Field(None, ge=1)
    fraction: float | None = Field(None, gt=0, le=1, description="clients sampled per round")
    local_epochs: int | None = Field(None, ge=1)
    aggregation: Literal["mean", "median", "trimmed_mean", "krum"] | None = Field(
        None, description="how fedavg/fedprox merge client weights (robust to attackers)"
    )
    data: str | None = Field(None, description="data source config (conf/data)")
    model: str | None = Field(None, description="model config (conf/model); default mlp")
    seed: int | None = None

    def to_overrides(self) -> list[str]:
        """The Hydra overrides these options stand for."""
        keys = {name: f"federated.{name}" for name in type(self).model_fields}
        keys |= {"data": "data", "model": "model", "seed": "seed"}
        return options_to_overrides(self, keys)


class FederatedResult(PipelineResult):
    """What a federated run returns: run folder, report, headline (the CLI prints it)."""


def compose_federated(overrides: list[str]):
    """The config of a federated run: ``federated=default`` and ``model=mlp`` unless chosen."""
    return compose_with_defaults(overrides, {"federated": "default", "model": DEFAULT_MODEL})


@flow(name="federated", log_prints=True)
@with_run_status
def federated(
    overrides: list[str] | None = None, options: FederatedOptions | None = None
) -> FederatedResult:
    """Run every federated strategy on Ray client actors and report them side by side.

    Args:
        overrides: Hydra overrides, e.g. ``["federated.partition=iid", "federated.rounds=10"]``;
            applied after ``options``.
        options: the common knobs as a typed form (the Prefect UI renders it).
    """
    from components.federated.experiment import FederatedConfig

    cfg = compose_federated([*(options.to_overrides() if options else []), *(overrides or [])])
    s = to_settings(cfg)
    config = to_group_config(cfg, "federated", FederatedConfig)
    dataset = ingest_task(s.data, s.run.cache_dir)
    spec = model_spec(s, dataset.meta)
    check_partition(dataset.path, config)
    run_dir = create_run_dir(s.run.root, "federated", s.run.id)
    start_status(run_dir, "federated", run_root=s.run.root)
    get_run_logger().info("run folder %s", run_dir)
    meta = write_run_files(run_dir, config_yaml=to_yaml(cfg), seed=s.seed, use_gpu=False)
    from tasks.federated import federated_task

    result = federated_task(dataset.path, spec, config, s.run)
    _save_states(run_dir, result.global_states)
    headline = headline_metrics(result.report)
    write_json(run_dir / "federated.json", result.report)
    write_json(run_dir / "metrics.json", {"headline": headline})
    data = report_data(s, run_dir, cfg, meta, dataset, [], {}, None, headline)
    data.title = f"sennflow federated: {spec.name} on {s.data.source}, {config.num_clients} clients"
    data.federated = result.report
    report = report_task(run_dir, data)
    return FederatedResult(run_dir=str(run_dir), report=str(report), headline=headline)


def check_partition(dataset_path, config) -> None:
    """Fail before anything is written when the training split cannot be partitioned so, or
    when an image dataset is too large to hold in memory."""
    from components.data.decoded_memory import check_decoded_size
    from components.data.reader import read_labels
    from components.federated.experiment import partition
    from tasks.federated import HELD_SPLITS

    check_decoded_size(dataset_path, HELD_SPLITS, "federated")
    try:
        partition(read_labels(dataset_path, "train"), config)
    except ValueError as err:
        raise ConfigError(f"federated.partition / federated.num_clients: {err}") from err


def headline_metrics(report: dict) -> dict:
    """Per strategy: final test accuracy and mean bytes per round (both directions); faults."""
    headline: dict = {}
    faults = 0
    for strategy, summary in report["strategies"].items():
        rounds = summary["rounds"]
        headline[f"{strategy}_accuracy"] = summary["final_accuracy"]
        headline[f"{strategy}_bytes_per_round"] = round(
            statistics.mean(
                sum(r["bytes_sent"].values()) + sum(r["bytes_received"].values()) for r in rounds
            )
        )
        faults += sum(e["kind"] != "skipped" for e in summary["events"])
    headline["dropped_or_rejected_updates"] = faults
    return headline


def _save_states(run_dir: Path, states: dict) -> None:
    from components.federated.messages import save_message

    folder = run_dir / "federated"
    folder.mkdir(exist_ok=True)
    for strategy, state in states.items():
        save_message(folder / f"{strategy}.safetensors", state)
