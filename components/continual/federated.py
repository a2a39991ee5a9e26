"""Federated continual learning: learner actors that each meet their own stream and merge
class prototypes after every task (federated reconnaissance, Hendryx et al. 2021, "Federated
Reconnaissance: Efficient, Distributed, Class-Incremental Learning").

Setting, as in the paper: every client learns a growing set of classes from its own data, then
the clients communicate what they learned as per-class embedding sums and counts; after merging,
every client can tell apart the union of the classes any client has seen. Here:

- the training split is divided IID among ``num_clients`` clients (:func:`~components.federated.
  partition.iid`), and client ``k`` meets its rows as a class-incremental stream of
  ``num_tasks`` tasks in its own class order (seed ``seed + k``), so at task ``i`` the clients
  have seen different classes;
- each client is an :class:`~components.continual.learners.NCMLearner` on a *shared, fixed*
  embedding: every client builds it from the same seed and never trains it (the paper's
  prototypical network is likewise fixed while clients learn; it is pre-trained on base classes,
  which this setting does not have, so the embedding is the seeded initialisation; with
  ``continual.federated_embedding`` it is a self-supervised pre-trained encoder instead, the
  closer match to the paper's pre-trained network). Prototypes
  from different clients are then comparable, and learning a class is accumulating its sum and
  count, with no gradient step;
- after every task the server adds up all clients' sums and counts (count-weighted averaging of
  the prototypes, :func:`~components.federated.prototypes.merge`); the merged classifier is the
  nearest merged prototype over every class seen by any client.

The merged model's accuracy matrix ``R_merged[i, j]`` is measured on the tasks of the reference
scenario (``class_incremental(y_train, num_tasks, seed)``); each client's own ``R`` (before
merging) on its own tasks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from components.continual.learners import LearnerConfig, NCMLearner
from components.continual.metrics import summary
from components.continual.scenarios import Task, class_incremental
from components.federated.messages import decode, encode, prototype_update, read_prototype_update
from components.federated.partition import iid
from components.federated.prototypes import merge, nearest_prototype_predict


class ContinualClient:
    """One client: an NCM learner on the shared embedding and its own stream (a Ray actor)."""

    def __init__(
        self,
        config: LearnerConfig,
        x: np.ndarray,
        y: np.ndarray,
        num_tasks: int,
        seed: int,
        embedding: str | None = None,
    ) -> None:
        import torch

        torch.set_num_threads(1)
        body = _ssl_body(embedding, config.input_dim) if embedding else None
        if body is not None:
            config = dataclasses.replace(config, embedding_dim=body.dim)
        self.learner = NCMLearner(config, train_embedding="none")
        if body is not None:
            self.learner.net.body = body  # never trained: train_embedding="none"
        self.x, self.y = np.array(x), np.array(y)
        self.tasks = class_incremental(self.y, num_tasks, seed=seed)

    def step(self, i: int) -> bytes:
        """Learn task ``i`` of this client's stream; return its encoded prototype update."""
        task = self.tasks[i]
        self.learner.learn_task(self.x[task.indices], self.y[task.indices], task.classes)
        return encode(prototype_update(*self.learner.prototypes()))

    def own_row(self, x_test: np.ndarray, y_test: np.ndarray) -> list[float]:
        """This client's accuracy (before merging) on each of its own tasks."""
        return self.learner.evaluate(self.tasks, np.array(x_test), y_test).tolist()

    def task_classes(self) -> list[list[int]]:
        return [list(t.classes) for t in self.tasks]

    def embed(self, x: np.ndarray) -> np.ndarray:
        """The L2-normalised shared embedding (as the NCM learner computes it)."""
        return self.learner._normalized_embedding(np.array(x))


def _ssl_body(folder: str, input_dim: int):
    """The SSL encoder of checkpoint ``folder`` as the learner's embedding body: it reads the
    learner's flattened rows, reshaped to the encoder's input, and returns flat embeddings."""
    import torch

    from components.ssl.checkpoint import load_encoder, read_encoder_checkpoint

    shape = tuple(read_encoder_checkpoint(folder)[0]["input_shape"])
    if int(np.prod(shape)) != input_dim:
        raise ValueError(f"the encoder of {folder} reads {shape}, the rows have {input_dim} values")

    class FlatEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = load_encoder(folder)
            with torch.no_grad():
                self.dim = int(self(torch.zeros(1, input_dim)).shape[1])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x.reshape(len(x), *shape)).flatten(1)

    return FlatEncoder().eval()


def _merged_row(z_test, y_test, prototypes, tasks: list[Task]) -> list[float]:
    pred = nearest_prototype_predict(z_test, prototypes)
    return [float((pred == y_test)[np.isin(y_test, t.classes)].mean()) for t in tasks]


def run_federated_continual(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    config: LearnerConfig,
    num_clients: int,
    num_tasks: int,
    seed: int,
    on_task: Callable[[int, list[float]], None] | None = None,
    embedding: str | None = None,
) -> dict:
    """Run the clients through their streams, merging prototypes after every task.

    Args:
        data: ``(x_train, y_train, x_test, y_test)``.
        config: the shared learner configuration (its seed fixes the shared embedding).
        num_clients: learner actors (>= 1); each gets an IID share of the training rows.
        num_tasks: tasks per client stream (must divide each client's classes evenly).
        seed: seeds the row split, the reference scenario and the clients' class orders.
        on_task: optional ``on_task(i, merged_row)`` after each merge.
        embedding: an SSL checkpoint folder whose encoder is the shared embedding (default:
            the learners' seeded, untrained one).

    Returns:
        The report's ``continual["federated"]`` dict: ``num_clients``, ``method`` (``"ncm"``),
        ``R_merged``, ``R_clients``, ``summary_merged``, ``summary_clients``,
        ``bytes_per_merge`` and ``client_tasks`` (each client's class order).
    """
    import ray

    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    x, y, x_test, y_test = data
    reference = class_incremental(y, num_tasks, seed=seed)
    actor = ray.remote(num_cpus=0)(ContinualClient)
    clients = [
        actor.remote(config, x[rows], y[rows], num_tasks, seed + k, embedding)
        for k, rows in enumerate(iid(y, num_clients, seed=seed))
    ]
    try:
        z_test = ray.get(clients[0].embed.remote(x_test))
        merged_rows, client_rows, sizes = [], [[] for _ in clients], []
        for i in range(num_tasks):
            updates = ray.get([c.step.remote(i) for c in clients])
            sizes.append(sum(len(u) for u in updates))
            prototypes, _ = merge([read_prototype_update(decode(u)) for u in updates])
            merged_rows.append(_merged_row(z_test, y_test, prototypes, reference))
            for k, row in enumerate(ray.get([c.own_row.remote(x_test, y_test) for c in clients])):
                client_rows[k].append(row)
            if on_task is not None:
                on_task(i, merged_rows[-1])
        client_tasks = ray.get([c.task_classes.remote() for c in clients])
    finally:
        for client in clients:
            ray.kill(client)
    R_merged = np.array(merged_rows)
    return {
        "num_clients": num_clients,
        "method": "ncm",
        "embedding": embedding,
        "config": dataclasses.asdict(config),
        "reference_tasks": [list(t.classes) for t in reference],
        "client_tasks": {str(k): tasks for k, tasks in enumerate(client_tasks)},
        "R_merged": R_merged.tolist(),
        "R_clients": {str(k): rows for k, rows in enumerate(client_rows)},
        "summary_merged": summary(R_merged),
        "summary_clients": {str(k): summary(np.array(r)) for k, r in enumerate(client_rows)},
        "bytes_per_merge": sizes,
    }
