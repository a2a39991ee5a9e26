"""One attacking client among honest ones, through the server's real round loop.

A finite but malicious update (weights scaled by -4) passes validation and drags the
sample-weighted mean (FedAvg, McMahan et al. 2017) away from the honest run; the coordinate-wise
median and trimmed mean (Yin et al. 2018) and Krum (Blanchard et al. 2017) keep the honest
accuracy. A client claiming 1000 times its samples is rejected by the sample-count bound.

The clients run in this process (:class:`FederatedClient` is a plain class) behind the one call
the round loop makes on an actor, ``fit_round.remote``, whose answer goes through Ray's object
store: the actors themselves are tested in ``test_federated_rounds.py``, and six actor processes
would cost this test most of its time.
"""

from __future__ import annotations

import pytest
import torch

from components.data.reader import read_split
from components.federated.client import NUM_SAMPLES, FederatedClient
from components.federated.experiment import ChaosConfig, FederatedConfig
from components.federated.partition import iid
from components.federated.rounds import global_accuracy, run_rounds
from components.training.checkpoint import ModelSpec

pytestmark = [pytest.mark.ray]

SPEC = ModelSpec("mlp", (1, 8, 8), 10, tiny=False)
HONEST, SCALER, INFLATER = [0, 1, 2, 3], 4, 5
ROUNDS = 8  # lr 0.2, 2 local epochs: the honest run has converged (measured 0.97)
CHAOS = ChaosConfig(scale_client=SCALER, scale=-4.0, inflate_client=INFLATER)


class InProcessClient:
    """A :class:`FederatedClient` in this process, called as a Ray actor handle is."""

    def __init__(self, client: FederatedClient) -> None:
        self.client = client
        self.fit_round = self  # so that ``handle.fit_round.remote(payload)`` works

    def remote(self, payload: bytes):
        import ray

        return ray.put(self.client.fit_round(payload))


def test_robust_aggregation_keeps_the_honest_accuracy(ray_session, digits_dataset):
    x, y = read_split(digits_dataset, "train")
    x_test, y_test = read_split(digits_dataset, "test")
    parts = iid(y, 6, seed=0)
    threads = torch.get_num_threads()  # each client sets 1 thread for its (own) process
    clients = [
        InProcessClient(
            FederatedClient(
                f"c{i}",
                x[rows],
                y[rows],
                SPEC,
                "fedavg",
                lr=0.2,
                seed=i,
                local_epochs=2,
                **CHAOS.client_hooks(i),
            )
        )
        for i, rows in enumerate(parts)
    ]
    torch.manual_seed(0)
    initial = SPEC.build().state_dict()
    shard_sizes = {i: len(rows) for i, rows in enumerate(parts)}

    def run(members, aggregation):
        config = FederatedConfig(aggregation=aggregation, num_clients=len(members))
        return run_rounds(
            [clients[i] for i in members],
            "fedavg",
            num_rounds=ROUNDS,
            fraction=1.0,
            seed=0,
            timeout_s=60,
            global_state=initial,
            evaluate=global_accuracy("fedavg", SPEC, x_test, y_test),
            merge=config.merge(),
            max_samples={k: shard_sizes[i] for k, i in enumerate(members)},
        )

    try:
        honest = run(HONEST, "mean")
        attacked = {
            a: run([*HONEST, SCALER, INFLATER], a)
            for a in ("mean", "median", "trimmed_mean", "krum")
        }
    finally:
        torch.set_num_threads(threads)
    accuracy = {a: r.rounds[-1].accuracy for a, r in attacked.items()}
    print(f"honest {honest.rounds[-1].accuracy:.4f}, attacked {accuracy}")
    assert not honest.events
    for name, result in attacked.items():
        # the inflated claim is rejected every round, naming the claim and the bound
        assert [(e.round, e.client, e.kind) for e in result.events] == [
            (r, INFLATER, "rejected") for r in range(ROUNDS)
        ], name
        claim = 1000 * shard_sizes[INFLATER]
        assert result.events[0].reason == (
            f"'{NUM_SAMPLES}' claims {claim} samples, more than the {shard_sizes[INFLATER]} "
            "this client holds"
        )
        assert all(r.participants == [*HONEST, SCALER] for r in result.rounds), name
    reference = honest.rounds[-1].accuracy
    assert reference >= 0.9  # measured 0.970
    assert accuracy["mean"] <= reference - 0.5  # measured 0.097: one client drags the mean away
    assert abs(accuracy["median"] - reference) <= 0.02  # measured 0.970
    assert abs(accuracy["trimmed_mean"] - reference) <= 0.02  # measured 0.963
    assert accuracy["krum"] >= reference - 0.05  # one client's model, not an average: 0.948
