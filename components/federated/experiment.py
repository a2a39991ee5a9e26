"""One federated experiment: partition the data, run each strategy's rounds, summarise them.

The federated task calls :func:`run_federated` (the dataset's splits through
:func:`run_experiment`) once per run, after the flow's :func:`check_partition`. Every strategy in
``config.strategies`` meets the same partition, the same client sampling (same seed) and the same
number of rounds, so their accuracies and bytes compare like for like. Clients are Ray actors
(:func:`components.federated.rounds.client_actor`) that Ray restarts when they die, so a client
killed in one round rejoins in a later one. FedAvg/FedProx merge with ``config.aggregation``
(the sample-weighted mean, or a robust rule from :mod:`components.federated.aggregation`), and
no update may claim more samples than its client's shard holds.

The result is the report's ``federated`` dict (see :class:`components.report.ReportData`) plus
the final global states, which the flow saves.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from components.data.decoded_memory import check_decoded_size
from components.data.reader import read_labels, read_split
from components.federated.aggregation import AGGREGATIONS, aggregate
from components.federated.client import (
    STRATEGIES,
    build_model,
    feature_space,
    feature_space_line,
    shared_embedding,
)
from components.federated.partition import dirichlet, disjoint_classes, iid
from components.federated.rounds import (
    RoundRecord,
    RoundsResult,
    await_actor,
    client_actor,
    global_accuracy,
    initial_prototype_state,
    run_rounds,
    start_clients,
)
from components.training.checkpoint import ModelSpec

log = logging.getLogger(__name__)

PARTITIONS = ("iid", "dirichlet", "disjoint_classes")
HELD_SPLITS = ("train", "test")  # what the clients train on and the server evaluates on
INFLATE_FACTOR = 1000  # chaos.inflate_client's claimed samples per sample it holds


@dataclass(frozen=True)
class ChaosConfig:
    """Fault drills: kill a client mid-round, or make one send NaN, scaled or inflated updates.

    Attributes:
        kill_client: index of a client to ``ray.kill`` during round ``kill_round`` (Ray restarts
            it; it rejoins in a later round). None: no kill. The client answers after
            ``kill_delay_s`` every round so that the kill always lands while it works.
        kill_round: the round of the kill.
        kill_delay_s: that client's delay per call.
        nan_client: index of a client whose every update holds NaN (rejected by the server).
        scale_client: index of a client whose every update is multiplied by ``scale`` (finite,
            so it passes validation: what robust ``aggregation`` is for).
        scale: that client's factor.
        inflate_client: index of a client that claims 1000 times its samples (rejected).
    """

    kill_client: int | None = None
    kill_round: int = 1
    kill_delay_s: float = 1.0
    nan_client: int | None = None
    scale_client: int | None = None
    scale: float = -4.0
    inflate_client: int | None = None

    def client_hooks(self, client: int) -> dict:
        """The :class:`~components.federated.client.FederatedClient` test hooks of ``client``."""
        return {
            "poison": client == self.nan_client,
            "delay_s": self.kill_delay_s if client == self.kill_client else 0.0,
            "attack_scale": self.scale if client == self.scale_client else 1.0,
            "claim_factor": INFLATE_FACTOR if client == self.inflate_client else 1,
        }


@dataclass(frozen=True)
class FederatedConfig:
    """The federated experiment (the ``federated`` config group), validated on construction.

    Attributes:
        strategies: strategies to run, each over the same partition (``prototypes``,
            ``fedavg``, ``fedprox``); the first is the run's headline.
        partition: ``iid``, ``dirichlet`` (label skew, ``alpha``) or ``disjoint_classes``.
        alpha: Dirichlet concentration (smaller: more skewed).
        num_clients: clients (one Ray actor each).
        rounds: rounds per strategy.
        fraction: share of clients sampled per round, in (0, 1].
        local_epochs: FedAvg's E (local epochs per round).
        lr: the clients' SGD learning rate.
        mu: FedProx's proximal weight.
        batch_size: the clients' minibatch size (FedAvg's B).
        timeout_s: how long a round waits for its clients.
        seed: seeds the partition, the client sampling and the shared model weights.
        aggregation: how FedAvg/FedProx merge the updates: ``mean`` (sample-weighted, McMahan et
            al. 2017), or robust to ``byzantine`` attacking clients: ``median``,
            ``trimmed_mean`` (Yin et al. 2018) or ``krum`` (Blanchard et al. 2017). Prototype
            averaging always sums counts (its updates are bounded by the sample-count check).
        byzantine: ``f``, the attacking clients per round that ``trimmed_mean`` (trims ``f``
            values at each end of every coordinate) and ``krum`` tolerate; a round must sample
            more than ``2f`` clients (``2f + 2`` for krum).
        chaos: fault drills (off by default).
        embedding: prototypes: an SSL checkpoint folder (``sennflow pretrain``) whose encoder
            embeds clients' and test data instead of the untrained model / standardised input.
    """

    strategies: tuple[str, ...] = ("prototypes", "fedavg")
    partition: str = "disjoint_classes"
    alpha: float = 0.5
    num_clients: int = 5
    rounds: int = 5
    fraction: float = 1.0
    local_epochs: int = 1
    lr: float = 0.05
    mu: float = 0.01
    batch_size: int = 32
    timeout_s: float = 120.0
    seed: int = 0
    aggregation: str = "mean"
    byzantine: int = 1
    chaos: ChaosConfig = ChaosConfig()
    embedding: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.chaos, dict):
            object.__setattr__(self, "chaos", ChaosConfig(**self.chaos))
        object.__setattr__(self, "strategies", tuple(self.strategies))
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if not self.strategies or unknown or len(set(self.strategies)) < len(self.strategies):
            raise ValueError(
                f"FederatedConfig.strategies={list(self.strategies)}: need distinct strategies "
                f"from {list(STRATEGIES)}"
            )
        if self.partition not in PARTITIONS:
            raise ValueError(
                f"FederatedConfig.partition={self.partition!r}: choose from {list(PARTITIONS)}"
            )
        self._check_numbers()
        self._check_aggregation()
        for name in ("kill_client", "nan_client", "scale_client", "inflate_client"):
            client = getattr(self.chaos, name)
            if client is not None and not 0 <= client < self.num_clients:
                raise ValueError(
                    f"FederatedConfig.chaos.{name}={client}: no such client "
                    f"(clients are 0..{self.num_clients - 1})"
                )

    def _check_numbers(self) -> None:
        checks = {
            "num_clients": self.num_clients >= 1,
            "rounds": self.rounds >= 1,
            "fraction": 0 < self.fraction <= 1,
            "local_epochs": self.local_epochs >= 1,
            "lr": self.lr > 0,
            "mu": self.mu >= 0,
            "alpha": self.alpha > 0,
            "batch_size": self.batch_size >= 1,
            "timeout_s": self.timeout_s > 0,
            "byzantine": self.byzantine >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"FederatedConfig.{name}={getattr(self, name)!r} is out of range "
                    "(counts >= 1, 0 < fraction <= 1, lr/alpha/timeout > 0, mu/byzantine >= 0)"
                )

    def _check_aggregation(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"FederatedConfig.aggregation={self.aggregation!r}: choose from "
                f"{list(AGGREGATIONS)}"
            )
        per_round = math.ceil(self.fraction * self.num_clients)
        needed = {"trimmed_mean": 2 * self.byzantine + 1, "krum": 2 * self.byzantine + 3}
        if per_round < needed.get(self.aggregation, 0):
            raise ValueError(
                f"FederatedConfig.aggregation={self.aggregation} with byzantine={self.byzantine} "
                f"needs at least {needed[self.aggregation]} clients per round, but "
                f"num_clients={self.num_clients} x fraction={self.fraction} samples {per_round}"
            )

    def merge(self):
        """``merge(states, sample_counts)`` for FedAvg/FedProx rounds, per :attr:`aggregation`."""
        return functools.partial(aggregate, method=self.aggregation, byzantine=self.byzantine)


@dataclass
class ExperimentResult:
    """The report's ``federated`` dict and the final global state of each strategy."""

    report: dict
    global_states: dict[str, dict[str, Tensor]]


class PartitionError(ValueError):
    """The training split cannot be partitioned as ``federated.partition`` /
    ``federated.num_clients`` ask."""


def check_partition(dataset_path: Path, config: FederatedConfig) -> None:
    """Fail before anything is written when the training split cannot be partitioned so, or
    when an image dataset is too large to hold in memory.

    Raises:
        PartitionError: naming ``federated.partition / federated.num_clients`` and why.
        DataError: the decoded splits of an image dataset are over the in-memory limit.
    """
    check_decoded_size(dataset_path, HELD_SPLITS, "federated")
    try:
        partition(read_labels(dataset_path, "train"), config)
    except ValueError as err:
        raise PartitionError(f"federated.partition / federated.num_clients: {err}") from err


def partition(y: np.ndarray, config: FederatedConfig) -> list[np.ndarray]:
    """Row indices of each client's shard, by ``config.partition``."""
    if config.partition == "iid":
        return iid(y, config.num_clients, seed=config.seed)
    if config.partition == "dirichlet":
        return dirichlet(y, config.num_clients, alpha=config.alpha, seed=config.seed)
    return disjoint_classes(y, config.num_clients, seed=config.seed)


def run_experiment(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    spec: ModelSpec,
    config: FederatedConfig,
    on_round: Callable[[str, RoundRecord], None] | None = None,
) -> ExperimentResult:
    """Run every strategy of ``config`` on Ray client actors (Ray must be initialised).

    Args:
        data: ``(x_train, y_train, x_test, y_test)``; the training split is partitioned.
        spec: the model every client builds (from the shared seed ``config.seed``).
        config: the experiment.
        on_round: optional ``on_round(strategy, record)`` after every round.
    """
    x, y, x_test, y_test = data
    parts = partition(y, config)
    clients = [
        {"client": i, "samples": int(len(rows)), "classes": sorted(set(y[rows].tolist()))}
        for i, rows in enumerate(parts)
    ]
    report = {
        "partition": config.partition,
        "alpha": config.alpha if config.partition == "dirichlet" else None,
        "num_clients": config.num_clients,
        "rounds": config.rounds,
        "fraction": config.fraction,
        "local_epochs": config.local_epochs,
        "aggregation": config.aggregation,
        "byzantine": config.byzantine,
        "embedding": config.embedding,
        "feature_space": _prototype_space(spec, config),
        "clients": clients,
        "strategies": {},
    }
    states = {}
    for strategy in config.strategies:
        result = _run_strategy(data, parts, spec, config, strategy, on_round)
        states[strategy] = result.global_state
        report["strategies"][strategy] = _summary(result, clients, data, spec, strategy, config)
    return ExperimentResult(report=report, global_states=states)


def run_federated(
    dataset_path: Path,
    spec: ModelSpec,
    config: FederatedConfig,
    on_round: Callable[[str, RoundRecord], None] | None = None,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> ExperimentResult:
    """:func:`run_experiment` on the dataset's train and test splits (Ray must be initialised),
    logging every round and every dropped or rejected client to ``logger``.

    The splits are held in memory (an image dataset decoded, up to
    :data:`components.data.decoded_memory.WHOLE_SPLITS_BYTES`; over it, ``DataError``).

    Args:
        dataset_path: the ingested dataset.
        spec: the model every client builds.
        config: the experiment.
        on_round: optional ``on_round(strategy, record)`` after every round (progress bars).
        logger: where the rounds and faults are told (the task passes Prefect's run logger).
    """
    check_decoded_size(dataset_path, HELD_SPLITS, "federated")
    data = tuple(part for split in HELD_SPLITS for part in read_split(dataset_path, split))
    if (space := _prototype_space(spec, config)) is not None:
        logger.info(feature_space_line(space, spec.name, config.embedding))

    def logged(strategy: str, record: RoundRecord) -> None:
        logger.info(
            "%s round %d/%d: %d of %d sampled clients merged, test accuracy %.4f, "
            "%d bytes received",
            strategy,
            record.round + 1,
            config.rounds,
            len(record.participants),
            len(record.sampled),
            record.accuracy,
            record.total_received,
        )
        if on_round is not None:
            on_round(strategy, record)

    result = run_experiment(data, spec, config, on_round=logged)
    for strategy, summary in result.report["strategies"].items():
        for event in summary["events"]:
            logger.warning(
                "%s round %d: client %d %s: %s",
                strategy,
                event["round"],
                event["client"],
                event["kind"],
                event["reason"],
            )
    return result


def _prototype_space(spec: ModelSpec, config: FederatedConfig) -> str | None:
    """Where prototype averaging's features live (:func:`feature_space`); None without it."""
    if "prototypes" not in config.strategies:
        return None
    return feature_space(spec, config.seed, config.embedding)


def federated_headline(report: dict) -> dict:
    """The run's headline numbers from the report's ``federated`` dict: per strategy, the final
    test accuracy and the mean bytes per round (both directions); the count of dropped or
    rejected updates."""
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


def _run_strategy(data, parts, spec, config, strategy, on_round) -> RoundsResult:
    import ray

    x, y, x_test, y_test = data
    chaos = config.chaos
    handles = start_clients(
        x,
        y,
        parts,
        spec,
        strategy,
        actor=client_actor(max_restarts=2),
        per_client=chaos.client_hooks,
        local_epochs=config.local_epochs,
        lr=config.lr,
        mu=config.mu,
        batch_size=config.batch_size,
        model_seed=config.seed,
        embedding=config.embedding,
    )

    def kill(rnd: int, current: list) -> None:
        if chaos.kill_client is not None and rnd == chaos.kill_round:
            log.warning("chaos drill: killing client %d in round %d", chaos.kill_client, rnd)
            ray.kill(current[chaos.kill_client], no_restart=False)

    try:
        return run_rounds(
            handles,
            strategy,
            num_rounds=config.rounds,
            fraction=config.fraction,
            seed=config.seed,
            timeout_s=config.timeout_s,
            global_state=_initial_state(strategy, spec, x, config),
            evaluate=global_accuracy(strategy, spec, x_test, y_test, config.seed, config.embedding),
            revive=lambda i: await_actor(handles[i]),
            after_send=kill,
            on_round=(lambda record: on_round(strategy, record)) if on_round else None,
            merge=config.merge(),
            max_samples={i: len(rows) for i, rows in enumerate(parts)},
        )
    finally:
        for handle in handles:
            ray.kill(handle, no_restart=True)


def _initial_state(strategy: str, spec: ModelSpec, x: np.ndarray, config: FederatedConfig):
    if strategy == "prototypes":
        dim = shared_embedding(spec, config.seed, config.embedding)(x[:1]).shape[1]
        return initial_prototype_state(spec.num_classes, dim)
    return build_model(spec, config.seed).state_dict()


def _summary(result: RoundsResult, clients, data, spec, strategy, config) -> dict:
    _, _, x_test, y_test = data
    state = result.global_state
    per_client = {}
    for client in clients:
        mask = np.isin(y_test, client["classes"])
        accuracy = global_accuracy(
            strategy, spec, x_test[mask], y_test[mask], config.seed, config.embedding
        )
        per_client[str(client["client"])] = float(accuracy(state)) if mask.any() else math.nan
    return {
        "final_accuracy": result.rounds[-1].accuracy,
        "client_accuracy": per_client,
        "rounds": [_round_dict(r) for r in result.rounds],
        "events": [dataclasses.asdict(e) for e in result.events],
    }


def _round_dict(record: RoundRecord) -> dict:
    return {
        "round": record.round,
        "sampled": record.sampled,
        "participants": record.participants,
        "bytes_sent": {str(k): v for k, v in record.bytes_sent.items()},
        "bytes_received": {str(k): v for k, v in record.bytes_received.items()},
        "accuracy": record.accuracy,
        "wall_s": record.wall_s,
    }
