"""One federated client: its own model, data shard and state; one update per round.

A plain class, so it runs in-process in unit tests; :func:`components.federated.rounds.client_actor`
wraps it as a Ray actor (one process per client). Every round the server sends the encoded global
state (:func:`components.federated.messages.encode`) and the client answers with its encoded update.

Strategies:

- ``"prototypes"``: Federated Reconnaissance (Hendryx et al. 2021, "Federated Reconnaissance:
  Efficient, Distributed, Class-Incremental Learning"). The client embeds its shard with a *fixed*
  embedding and sends per-class embedding sums and counts; no gradient steps. The embedding is the
  model's :meth:`~components.models.base.SennModel.embedding` (proto_ae's autoencoder latent,
  cnn's and st_protopnet's conv trunk, protopnet's latent grid), otherwise, for a model without
  one, the standardised input itself, flattened (the :class:`~components.models.mlp.MLP` has no
  encoder), or, with ``federated.embedding``, a
  pre-trained self-supervised encoder's output (:func:`shared_embedding`);
  :func:`feature_space` names which, for the flow's log and the report. The global payload is
  ignored: the
  embedding does not change between rounds, so the sums are what the client has seen so far.
- ``"fedavg"``: FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
  from Decentralized Data"): load the global weights, run ``local_epochs`` epochs of minibatch SGD
  on the model's own loss (``model.loss(...)["total"]``, so a prototype model trains and sends its
  prototypes with the rest of its weights; multi-stage schedules such as ProtoPNet's push are not
  run by clients), send the weights and the sample count.
- ``"fedprox"``: FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks"): as
  FedAvg, with ``mu / 2 * ||w - w_global||^2`` added to the loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from components.federated.aggregation import fedprox_penalty
from components.federated.messages import COUNTS, SUMS, decode, encode, prototype_update
from components.federated.prototypes import class_sums
from components.training.checkpoint import ModelSpec

STRATEGIES = ("prototypes", "fedavg", "fedprox")
NUM_SAMPLES = "num_samples"
# The feature spaces prototype averaging can work in (:func:`feature_space`).
SSL_EMBEDDING, MODEL_ENCODER, RAW_INPUTS = "SSL embedding", "model encoder", "raw inputs"


@torch.no_grad()
def embed(model: torch.nn.Module, x: np.ndarray | Tensor) -> np.ndarray:
    """The fixed embedding prototype averaging uses, ``(N, D)`` float64.

    ``model.embedding(x)`` (:meth:`~components.models.base.SennModel.embedding`) when the model
    has one, otherwise the (already standardised) input flattened. Server and clients must use
    the same function.
    """
    x = torch.from_numpy(np.array(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x.float()
    z = _model_embedding(model, x)
    return (x if z is None else z).flatten(1).double().numpy()


def _model_embedding(model: torch.nn.Module, x: Tensor) -> Tensor | None:
    """``model.embedding(x)`` in eval mode, or None when the model has none (``mlp``, or a
    plain module without the method)."""
    embedding = getattr(model, "embedding", None)
    if not callable(embedding):
        return None
    model.eval()
    return embedding(x)


@torch.no_grad()
def feature_space(spec: ModelSpec, model_seed: int = 0, embedding: str | None = None) -> str:
    """Which space :func:`shared_embedding` puts prototypes in: :data:`SSL_EMBEDDING` with
    ``embedding`` (``federated.embedding``), :data:`MODEL_ENCODER` when ``spec``'s model has an
    :meth:`~components.models.base.SennModel.embedding`, else :data:`RAW_INPUTS`."""
    if embedding:
        return SSL_EMBEDDING
    model = build_model(spec, model_seed)
    found = _model_embedding(model, torch.zeros(2, *spec.input_shape))
    return RAW_INPUTS if found is None else MODEL_ENCODER


def feature_space_line(space: str, model_name: str, embedding: str | None = None) -> str:
    """One line telling the user where prototype averaging's features live (the flow logs it)."""
    if space == SSL_EMBEDDING:
        return f"prototypes live in the SSL embedding of federated.embedding={embedding}"
    if space == MODEL_ENCODER:
        return f"prototypes live in model={model_name}'s encoder space (its untrained embedding)"
    return (
        f"prototypes live in the raw (standardised) input space: model={model_name} has no "
        "encoder; set federated.embedding=<sennflow pretrain run>/checkpoints/best to average "
        "in an encoder's space"
    )


def check_embedding(
    folder: str, input_shape: tuple[int, ...], key: str = "federated.embedding"
) -> int:
    """Validate ``key`` (``federated.embedding``): an SSL checkpoint whose encoder reads
    ``input_shape``.

    Returns:
        The embedding's dimension.

    Raises:
        SSLCheckpointError: naming ``key`` and what is wrong (no such folder, not an SSL
            checkpoint, unreadable, or an encoder for other inputs).
    """
    from components.ssl.checkpoint import SSLCheckpointError, load_encoder, read_encoder_checkpoint

    where = f"{key}={folder!r}"
    if not Path(folder).is_dir():
        raise SSLCheckpointError(f"{where}: no such folder (name an SSL checkpoint folder)")
    try:
        spec, _, _ = read_encoder_checkpoint(folder)
        trained_on = tuple(spec.get("input_shape", ()))
        if trained_on != tuple(input_shape):
            raise SSLCheckpointError(
                f"the encoder reads inputs {trained_on}, this dataset's are {tuple(input_shape)}"
            )
        encoder = load_encoder(folder)
    except SSLCheckpointError as err:
        raise SSLCheckpointError(f"{where}: {err}") from err
    return int(_encode(encoder, torch.zeros(1, *input_shape)).shape[1])


def shared_embedding(
    spec: ModelSpec, model_seed: int, embedding: str | None = None
) -> Callable[[np.ndarray | Tensor], np.ndarray]:
    """The fixed embedding every client and the server use for prototype averaging.

    ``embedding`` (``federated.embedding``) names a pre-trained SSL encoder checkpoint
    (:mod:`components.ssl.checkpoint`): its encoder's output, flattened. Without it,
    :func:`embed` with the untrained ``spec`` model built from ``model_seed``.
    """
    if embedding:
        from components.ssl.checkpoint import load_encoder

        encoder = load_encoder(embedding)
        return lambda x: _encode(encoder, x)
    model = build_model(spec, model_seed)
    return lambda x: embed(model, x)


@torch.no_grad()
def _encode(encoder: torch.nn.Module, x: np.ndarray | Tensor) -> np.ndarray:
    x = torch.from_numpy(np.array(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x.float()
    return encoder.eval()(x).flatten(1).double().numpy()


def build_model(spec: ModelSpec, model_seed: int) -> torch.nn.Module:
    """``spec.build()`` with weights drawn from ``model_seed`` (the global RNG is left as it was).

    Prototype averaging needs every client and the server to embed with the *same* weights, so
    they all build the model from one shared seed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model_seed)
        return spec.build()


def state_update(state: Mapping[str, Tensor], num_samples: int) -> dict[str, Tensor]:
    """The tensors of a FedAvg/FedProx update: the weights plus ``num_samples`` (int64 scalar)."""
    return {**state, NUM_SAMPLES: torch.tensor(int(num_samples), dtype=torch.int64)}


class FederatedClient:
    """A client holding its model, its shard ``(x, y)`` and its round counter.

    Args:
        client_id: a name for logs.
        x: the shard's features ``(N, *input_shape)``, float32.
        y: the shard's labels ``(N,)``, int.
        spec: the model (Ray pickles the frozen dataclass for the actor).
        strategy: ``"prototypes"``, ``"fedavg"`` or ``"fedprox"``.
        local_epochs: epochs over the shard per round (FedAvg's E); unused by prototypes.
        lr: SGD learning rate.
        mu: FedProx's proximal weight (ignored unless ``strategy == "fedprox"``).
        seed: seeds this client's minibatch order.
        model_seed: seeds the model's initial weights; shared by all clients and the server so
            that prototype averaging embeds everyone's data with the same weights.
        batch_size: minibatch size (FedAvg's B).
        poison: test hook: every update has NaN in its floating tensors.
        attack_scale: test hook: a finite attack; every update's floating tensors (the weights,
            or a prototype update's sums) are multiplied by this.
        claim_factor: test hook: every update claims this many times its samples
            (``num_samples``, or a prototype update's counts and sums, keeping its means).
        delay_s: test hook: sleep this long in each ``fit_round`` (to test timeouts and kills).
        embedding: prototypes: an SSL checkpoint folder whose encoder embeds the shard
            (``federated.embedding``; :func:`shared_embedding`).

    Raises:
        ValueError: on an unknown strategy, bad shapes or non-positive epochs/lr/batch size.
    """

    def __init__(
        self,
        client_id: str,
        x: np.ndarray,
        y: np.ndarray,
        spec: ModelSpec,
        strategy: str,
        local_epochs: int = 1,
        lr: float = 0.05,
        mu: float = 0.0,
        seed: int = 0,
        *,
        model_seed: int = 0,
        batch_size: int = 32,
        poison: bool = False,
        attack_scale: float = 1.0,
        claim_factor: int = 1,
        delay_s: float = 0.0,
        embedding: str | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        if local_epochs < 1 or not lr > 0 or batch_size < 1 or mu < 0:
            raise ValueError(
                f"need local_epochs >= 1, lr > 0, batch_size >= 1, mu >= 0; got {local_epochs}, "
                f"{lr}, {batch_size}, {mu}"
            )
        self.spec = spec
        # Own copies: Ray hands actors read-only arrays, which torch refuses to share.
        self.x = torch.from_numpy(np.array(x, dtype=np.float32))
        self.y = torch.from_numpy(np.array(y, dtype=np.int64))
        if self.x.shape[1:] != self.spec.input_shape or self.y.shape != (len(self.x),):
            raise ValueError(
                f"client {client_id}: x {tuple(self.x.shape)} / y {tuple(self.y.shape)} do not fit "
                f"input {self.spec.input_shape}"
            )
        # One thread per client: many clients share a few cores.
        torch.set_num_threads(1)
        self.model = build_model(self.spec, model_seed)
        self._embed = (
            shared_embedding(spec, model_seed, embedding) if strategy == "prototypes" else None
        )
        self.client_id = client_id
        self.strategy = strategy
        self.local_epochs = local_epochs
        self.lr = lr
        self.mu = mu if strategy == "fedprox" else 0.0
        self.seed = seed
        self.batch_size = batch_size
        self.poison = poison
        self.attack_scale = attack_scale
        self.claim_factor = claim_factor
        self.delay_s = delay_s
        self.rounds_done = 0

    def num_samples(self) -> int:
        """Rows in this client's shard."""
        return len(self.y)

    def fit_round(self, global_payload: bytes) -> bytes:
        """One round: read the global state, update locally, return the encoded update."""
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.strategy == "prototypes":
            update = self._prototype_update()
        else:
            update = self._train(decode(global_payload))
        self.rounds_done += 1
        return encode(self._tamper(update))

    def _tamper(self, update: dict[str, Tensor]) -> dict[str, Tensor]:
        """The test hooks' attacks on an honest update (none by default)."""
        if self.poison:
            update = {
                k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                for k, v in update.items()
            }
        if self.attack_scale != 1.0:
            update = {
                k: v * self.attack_scale if v.is_floating_point() else v for k, v in update.items()
            }
        if self.claim_factor != 1:
            inflated = (COUNTS, SUMS) if self.strategy == "prototypes" else (NUM_SAMPLES,)
            update = {k: v * self.claim_factor if k in inflated else v for k, v in update.items()}
        return update

    def _prototype_update(self) -> dict[str, Tensor]:
        sums, counts = class_sums(self._embed(self.x), self.y.numpy(), self.spec.num_classes)
        return prototype_update(sums, counts)

    def _train(self, global_state: dict[str, Tensor]) -> dict[str, Tensor]:
        self.model.load_state_dict(global_state)
        self.model.train()
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        # A new, seeded order (and dropout) every round, so rounds differ but runs repeat.
        round_seed = self.seed * 100_003 + self.rounds_done
        generator = torch.Generator().manual_seed(round_seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(round_seed)  # dropout draws from the global generator
            for _ in range(self.local_epochs):
                order = torch.randperm(len(self.y), generator=generator)
                for start in range(0, len(order), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    loss = self._loss(self.x[rows], self.y[rows])
                    if self.mu:
                        loss = loss + fedprox_penalty(self.model, global_state, self.mu)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        self.model.eval()
        return state_update(self.model.state_dict(), len(self.y))

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The model's own objective (``loss(...)["total"]``: a prototype model's clustering,
        separation and reconstruction terms included), else cross-entropy on the logits."""
        output = self.model(x)
        loss_fn = getattr(self.model, "loss", None)
        if callable(loss_fn):
            return loss_fn(output, x, y)["total"]
        return torch.nn.functional.cross_entropy(output.logits, y)
