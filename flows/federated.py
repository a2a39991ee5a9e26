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

from typing import Literal

from prefect import flow
from pydantic import Field

from flows.config import ConfigError, compose_with_defaults, to_group_config, to_settings
from flows.run import FlowOptions, RunResult, all_overrides, finish_run, open_run, report_data
from flows.run_folder import check_run_dir_free, with_run_status
from tasks.ingest import ingest_task

# The model clients build when the user names none: FedAvg then trains the MLP, and prototype
# averaging embeds with the standardised input (the MLP has no encoder).
DEFAULT_MODEL = "mlp"
Strategy = Literal["prototypes", "fedavg", "fedprox"]


class FederatedOptions(FlowOptions):
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


FederatedOptions.KEYS = {
    **{name: f"federated.{name}" for name in FederatedOptions.model_fields},
    "data": "data",
    "model": "model",
    "seed": "seed",
}


class FederatedResult(RunResult):
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
    from components.federated.client import check_embedding
    from components.federated.experiment import (
        FederatedConfig,
        PartitionError,
        check_partition,
        federated_headline,
    )
    from components.ssl.checkpoint import SSLCheckpointError
    from tasks.federated import federated_task

    cfg = compose_federated(all_overrides(options, overrides))
    settings = to_settings(cfg)
    check_run_dir_free(settings.run.root, "federated", settings.run.id)
    config = to_group_config(cfg, "federated", FederatedConfig)
    dataset = ingest_task(settings.data, settings.run.cache_dir)
    spec = settings.model_spec(dataset.meta)
    try:
        check_partition(dataset.path, config)
        if config.embedding:
            check_embedding(config.embedding, spec.input_shape)
    except (PartitionError, SSLCheckpointError) as err:
        raise ConfigError(str(err)) from err
    run = open_run("federated", settings, cfg)

    result = federated_task(dataset.path, spec, config, settings.run, run.run_dir / "federated")
    headline = federated_headline(result.report)
    report = report_data(
        run,
        dataset,
        title=(
            f"sennflow federated: {spec.name} on {settings.data.source}, "
            f"{config.num_clients} clients"
        ),
        headline=headline,
        federated=result.report,
    )
    files = {"federated.json": result.report}
    done = finish_run(run, settings, report, metrics={"headline": headline}, files=files)
    return FederatedResult(**done.model_dump())
