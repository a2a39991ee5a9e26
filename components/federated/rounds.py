"""The server's round loop over client actors: sample, send, wait, validate, merge, count bytes.

Each round (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
Decentralized Data"): sample ``ceil(fraction * n)`` clients with a seeded generator, send each the
encoded global state, wait at most ``timeout_s`` for their updates, check every update with
:func:`~components.federated.aggregation.validate_update`, and merge the valid ones:

- ``"fedavg"`` / ``"fedprox"``: by default the sample-count-weighted
  :func:`~components.federated.aggregation.fedavg` of the returned weights (FedProx, Li et al.
  2020, differs only in the clients' loss); ``merge`` swaps in a robust rule such as the
  coordinate-wise median (see :func:`~components.federated.aggregation.aggregate`).
- ``"prototypes"``: Federated Reconnaissance (Hendryx et al. 2021): the server keeps each client's
  latest ``(sums, counts)`` and the global state is their sum, ``{"sums": (C, D), "counts": (C,)}``
  (prototypes are ``sums / counts``, see :func:`prototypes_of`). Keeping the *latest* update per
  client, rather than adding every round's, means a client that re-sends its running sums is not
  counted twice, and a client left out of a round's sample keeps its classes in the global model.

Sample counts are claims: with ``max_samples`` (each client's shard size, known to the server
that partitioned the data) an update claiming more samples than its client holds is rejected,
so a client cannot buy itself the weight of the mean (or, for prototypes, of the class means).

Faults: a client whose actor died (``RayActorError``) or that misses the timeout is dropped from
that round, an update that fails validation is rejected; each writes a :class:`RoundEvent` (and a
log warning) and the round completes with the rest. If no update is accepted the global state is
kept. A dropped client is sampled again in later rounds and rejoins as soon as its actor answers.
Either create it with ``client_actor(max_restarts=1)`` so Ray restarts it (re-running its
constructor, which restores its shard) and pass ``revive=lambda i: await_actor(clients[i])`` so a
round waits for the restart instead of meeting a restarting actor, or pass a ``revive(i) ->
handle`` that creates a replacement actor. A
timed-out call is not interrupted (Ray cannot stop a running actor method), so that client's next
call waits behind it.

Clients are identified by their position in ``clients``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from components.federated.aggregation import check_sample_claim, fedavg, validate_update
from components.federated.client import NUM_SAMPLES, FederatedClient, shared_embedding
from components.federated.messages import COUNTS, SUMS, decode, encode, read_prototype_update
from components.federated.prototypes import nearest_prototype_predict
from components.training.checkpoint import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundEvent:
    """Something that went wrong for one client in one round.

    ``kind`` is ``"dropped"`` (died, timed out, raised) or ``"rejected"`` (invalid update), or
    ``"skipped"`` (a round without any accepted update: ``client`` is -1).
    """

    round: int
    client: int
    kind: str
    reason: str


@dataclass
class RoundRecord:
    """One round: who was asked, who was merged, bytes per client, accuracy, wall time."""

    round: int
    sampled: list[int]
    participants: list[int]
    bytes_sent: dict[int, int]
    bytes_received: dict[int, int]
    accuracy: float | None
    wall_s: float

    @property
    def total_sent(self) -> int:
        return sum(self.bytes_sent.values())

    @property
    def total_received(self) -> int:
        return sum(self.bytes_received.values())


@dataclass
class RoundsResult:
    """The final global state, one :class:`RoundRecord` per round, and every fault event."""

    global_state: dict[str, Tensor]
    rounds: list[RoundRecord] = field(default_factory=list)
    events: list[RoundEvent] = field(default_factory=list)


def client_actor(num_cpus: float = 0.0, max_restarts: int = 0):
    """:class:`FederatedClient` as a Ray actor class (``.remote(...)`` creates a client).

    ``num_cpus=0`` lets any number of simulated clients share a small machine (each uses one
    torch thread); ``max_restarts > 0`` lets Ray restart a killed client so it rejoins.
    """
    import ray

    return ray.remote(num_cpus=num_cpus, max_restarts=max_restarts)(FederatedClient)


def start_clients(
    x: np.ndarray,
    y: np.ndarray,
    parts: Sequence[np.ndarray],
    spec: ModelSpec,
    strategy: str,
    *,
    actor=None,
    per_client: Callable[[int], dict] | None = None,
    **kwargs,
) -> list:
    """One client actor per shard ``parts[i]`` of ``(x, y)``, constructed before returning (so
    round timeouts never count actor start-up).

    Args:
        x: inputs of the whole training split.
        y: their labels.
        parts: row indices per client (e.g. from :mod:`components.federated.partition`).
        spec: the model every client builds.
        strategy: ``"prototypes"``, ``"fedavg"`` or ``"fedprox"``.
        actor: the actor class (default :func:`client_actor`).
        per_client: extra :class:`FederatedClient` keyword arguments for client ``i``.
        **kwargs: :class:`FederatedClient` keyword arguments for every client.
    """
    import ray

    actor = actor or client_actor()
    clients = [
        actor.remote(
            f"c{i}",
            x[rows],
            y[rows],
            spec,
            strategy,
            seed=i,
            **kwargs,
            **(per_client(i) if per_client else {}),
        )
        for i, rows in enumerate(parts)
    ]
    ray.get([c.num_samples.remote() for c in clients])
    return clients


def global_accuracy(
    strategy: str,
    spec: ModelSpec,
    x_test: np.ndarray,
    y_test: np.ndarray,
    model_seed: int = 0,
    embedding: str | None = None,
) -> Callable[[Mapping[str, Tensor]], float]:
    """``evaluate(global_state) -> accuracy`` on a test set: nearest merged prototype (in the
    clients' shared embedding: the SSL encoder of checkpoint ``embedding``, else an untrained
    ``spec`` model built from ``model_seed``) or the global model's prediction."""
    if strategy == "prototypes":
        z_test = shared_embedding(spec, model_seed, embedding)(x_test)
        return lambda state: float(
            (nearest_prototype_predict(z_test, prototypes_of(state)) == y_test).mean()
        )

    def accuracy(state: Mapping[str, Tensor]) -> float:
        model = spec.build()
        model.load_state_dict(state)
        with torch.no_grad():
            pred = model.eval()(torch.as_tensor(x_test)).logits.argmax(1).numpy()
        return float((pred == y_test).mean())

    return accuracy


def await_actor(handle, timeout_s: float = 60.0):
    """Return ``handle`` once its actor answers, waiting while Ray restarts it.

    Meant as ``run_rounds(..., revive=lambda i: await_actor(clients[i]))`` for clients created
    with ``client_actor(max_restarts=...)``. Gives up (still returning the handle, which the
    next round then drops again) when the actor is dead for good or ``timeout_s`` passes.
    """
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(handle.num_samples.remote(), timeout=max(deadline - time.monotonic(), 0.1))
            break
        except ray.exceptions.ActorUnavailableError:
            time.sleep(0.2)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            break
    return handle


def initial_prototype_state(num_classes: int, dim: int) -> dict[str, Tensor]:
    """An empty prototype global state: zero sums (C, D) float64 and zero counts (C,) int64."""
    return {
        SUMS: torch.zeros(num_classes, dim, dtype=torch.float64),
        COUNTS: torch.zeros(num_classes, dtype=torch.int64),
    }


def prototypes_of(state: Mapping[str, Tensor]) -> np.ndarray:
    """Prototypes (C, D) from a prototype global state; a class never seen has a NaN row."""
    sums, counts = read_prototype_update(state)
    prototypes = np.full(sums.shape, np.nan)
    seen = counts > 0
    prototypes[seen] = sums[seen] / counts[seen, None]
    return prototypes


def _reference(strategy: str, global_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if strategy == "prototypes":
        return {
            SUMS: global_state[SUMS].to(torch.float32),
            COUNTS: global_state[COUNTS],
        }
    return {**global_state, NUM_SAMPLES: torch.zeros((), dtype=torch.int64)}


def _check(
    update: dict[str, Tensor], reference: dict[str, Tensor], strategy: str, bound: int | None
) -> str | None:
    reason = validate_update(update, reference)
    if reason:
        return reason
    if strategy == "prototypes":
        if (update[COUNTS] < 0).any():
            return f"{COUNTS!r} has negative entries"
        claimed = int(update[COUNTS].sum())  # a client may have nothing to add yet
        reason = check_sample_claim(claimed, bound) if claimed else None
        return f"{COUNTS!r} {reason}" if reason else None
    reason = check_sample_claim(int(update[NUM_SAMPLES]), bound)
    return f"{NUM_SAMPLES!r} {reason}" if reason else None


def _collect(
    refs: dict[int, object], timeout_s: float, rnd: int, events: list[RoundEvent], lost: set[int]
) -> dict[int, bytes]:
    """Wait for the round's calls; return ``{client: bytes}`` of those that answered in time.

    Clients whose actor died or is restarting are added to ``lost``.
    """
    import ray

    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    ready = set(ready)
    answers: dict[int, bytes] = {}
    for client, ref in refs.items():
        reason = None
        if ref not in ready:
            reason = f"timed out after {timeout_s} s"
        else:
            try:
                answers[client] = ray.get(ref)
            except ray.exceptions.ActorUnavailableError as err:
                reason = f"actor unavailable: {str(err).splitlines()[0]}"
                lost.add(client)
            except ray.exceptions.RayActorError as err:
                reason = f"actor died: {type(err).__name__}: {str(err).splitlines()[0]}"
                lost.add(client)
            except ray.exceptions.RayError as err:
                reason = f"fit_round failed: {type(err).__name__}: {str(err).splitlines()[0]}"
        if reason:
            events.append(RoundEvent(rnd, client, "dropped", reason))
            log.warning("round %d: client %d dropped: %s", rnd, client, reason)
    return answers


def _merge(strategy, accepted, latest, global_state, merge):
    if strategy == "prototypes":
        latest.update(accepted)
        sums = sum(torch.as_tensor(read_prototype_update(u)[0]) for u in latest.values())
        counts = sum(u[COUNTS].long() for u in latest.values())
        return {SUMS: sums, COUNTS: counts}
    clients = sorted(accepted)
    states = [{k: v for k, v in accepted[c].items() if k != NUM_SAMPLES} for c in clients]
    weights = [int(accepted[c][NUM_SAMPLES]) for c in clients]
    merged = merge(states, weights)
    return {k: merged[k].to(global_state[k].dtype) for k in global_state}


def run_rounds(
    clients: Sequence,
    strategy: str,
    num_rounds: int,
    fraction: float,
    seed: int,
    timeout_s: float,
    global_state: Mapping[str, Tensor],
    evaluate: Callable[[dict[str, Tensor]], float] | None = None,
    revive: Callable[[int], object] | None = None,
    after_send: Callable[[int, list], None] | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    merge: Callable[[list[dict[str, Tensor]], list[int]], dict[str, Tensor]] = fedavg,
    max_samples: Mapping[int, int] | None = None,
) -> RoundsResult:
    """Run ``num_rounds`` federated rounds over client actor handles.

    Args:
        clients: Ray actor handles of :class:`FederatedClient` (see :func:`client_actor`), all
            with the same ``strategy``; client ``i`` is ``clients[i]``.
        strategy: ``"prototypes"``, ``"fedavg"`` or ``"fedprox"``.
        num_rounds: rounds to run (>= 1).
        fraction: share of clients sampled per round, in (0, 1]; ``ceil(fraction * n)`` clients.
        seed: seeds the sampling.
        timeout_s: how long a round waits for its clients.
        global_state: the initial global state: the model's ``state_dict()`` for FedAvg/FedProx,
            :func:`initial_prototype_state` for prototypes. It also fixes the keys, shapes and
            dtypes every update is validated against. For prototypes its values only count until
            the first merge: the global state is then the sum of the clients' latest updates
            within this call (a second call starts from the clients' re-sent sums).
        evaluate: optional ``evaluate(global_state) -> accuracy`` called after every round.
        revive: optional ``revive(i) -> handle`` called before a round for each sampled client
            that died in an earlier round; the returned handle replaces it (in this call's own
            copy of ``clients``; the caller's sequence is not modified).
        after_send: optional ``after_send(round, clients)`` called once the round's calls are
            sent, before waiting for them (chaos drills kill a client here, mid-round).
        on_round: optional ``on_round(record)`` called after every round (progress, logs).
        merge: ``merge(states, sample_counts) -> state`` for FedAvg/FedProx (default
            :func:`~components.federated.aggregation.fedavg`; e.g. a ``functools.partial`` of
            :func:`~components.federated.aggregation.aggregate` for a robust rule).
        max_samples: optional ``{client: most samples its update may claim}``; an update
            claiming more (``num_samples``, or the sum of a prototype update's counts) is
            rejected. Clients not in it are unbounded.

    Returns:
        The final global state, a record per round and the fault events.

    Raises:
        ValueError: on bad arguments.
    """
    if strategy not in ("prototypes", "fedavg", "fedprox"):
        raise ValueError(f"unknown strategy {strategy!r}")
    if not clients or num_rounds < 1 or not 0 < fraction <= 1 or not timeout_s > 0:
        raise ValueError(
            f"need clients, num_rounds >= 1, 0 < fraction <= 1, timeout_s > 0; got "
            f"{len(clients)} clients, {num_rounds}, {fraction}, {timeout_s}"
        )
    clients = list(clients)
    rng = np.random.default_rng(seed)
    per_round = math.ceil(fraction * len(clients))
    state = {k: v.detach().cpu().clone() for k, v in global_state.items()}
    reference = _reference(strategy, state)
    result = RoundsResult(global_state=state)
    latest: dict[int, dict[str, Tensor]] = {}
    dead: set[int] = set()
    for rnd in range(num_rounds):
        start = time.perf_counter()
        sampled = sorted(int(i) for i in rng.choice(len(clients), per_round, replace=False))
        for i in sampled:
            if i in dead and revive is not None:
                clients[i] = revive(i)
                dead.discard(i)
        payload = encode(state)
        refs = {i: clients[i].fit_round.remote(payload) for i in sampled}
        if after_send is not None:
            after_send(rnd, clients)
        answers = _collect(refs, timeout_s, rnd, result.events, dead)
        accepted: dict[int, dict[str, Tensor]] = {}
        for client, data in answers.items():
            try:
                update = decode(data)
                bound = max_samples.get(client) if max_samples is not None else None
                reason = _check(update, reference, strategy, bound)
            except ValueError as err:
                reason = str(err)
            if reason:
                result.events.append(RoundEvent(rnd, client, "rejected", reason))
                log.warning("round %d: client %d update rejected: %s", rnd, client, reason)
            else:
                accepted[client] = update
        if accepted:
            state = _merge(strategy, accepted, latest, state, merge)
        else:
            reason = "no valid update; global state kept"
            result.events.append(RoundEvent(rnd, -1, "skipped", reason))
            log.warning("round %d: %s", rnd, reason)
        accuracy = float(evaluate(state)) if evaluate is not None else None
        record = RoundRecord(
            round=rnd,
            sampled=sampled,
            participants=sorted(accepted),
            bytes_sent={i: len(payload) for i in sampled},
            bytes_received={i: len(d) for i, d in answers.items()},
            accuracy=accuracy,
            wall_s=time.perf_counter() - start,
        )
        result.rounds.append(record)
        if on_round is not None:
            on_round(record)
    result.global_state = state
    return result
