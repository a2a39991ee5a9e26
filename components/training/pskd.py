"""PS-KD: self-knowledge distillation with progressive refinement of targets.

Kim, Ji, Yoon, Hwang, "Self-Knowledge Distillation with Progressive Refinement of Targets",
ICCV 2021; reference code github.com/lgcnsai/PS-KD-Pytorch (``main.py``, ``loss/pskd_loss.py``),
read and followed. At epoch ``t`` of ``T`` (1-based) every training sample ``i`` is trained
with the cross-entropy against

    q_i = (1 - alpha_t) * onehot(y_i) + alpha_t * p_{t-1}(x_i),   alpha_t = alpha_T * t / T,

where ``p_{t-1}(x_i)`` is the softmax the model itself gave sample ``i`` in the previous
epoch's training pass (the same forward that trained it, so with that epoch's augmentation and
dropout). As in the reference code the predictions live in a per-sample table indexed by sample
id, overwritten right after each batch's step, and a sample not seen yet (the first epoch) uses
its one-hot label, so the first epoch trains on the hard labels whatever ``alpha_1`` is.
Validation keeps the hard-label loss (the reference validates with plain cross-entropy).

Departures: the model's own cross-entropy term(s) take the targets through
:meth:`~components.models.base.SennModel.soft_targets` (prototype models keep their other terms
on the true label). With data-parallel workers each rank keeps the rows of its own shard (the
reference all-gathers every rank's predictions into one full table per rank); the checkpoint
holds every rank's rows, gathered, so a resumed run (on any number of workers) continues exactly.
``T`` is the planned number of epochs of all training stages; a padded duplicate of a row within
one epoch (shards padded to equal length) reads the row its first visit wrote.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from components.training.config import TrainConfig


def alpha_at(alpha_T: float, epoch: int, epochs: int) -> float:  # noqa: N803 (paper's name)
    """The paper's linear schedule: ``alpha_T * epoch / epochs`` for the 1-based ``epoch``."""
    return alpha_T * epoch / epochs


class PSKDTargets:
    """One rank's table of last-epoch predictions, and each batch's PS-KD targets from it.

    Used as ``train_epoch``'s ``targets``: called with a batch's ``(x, y, ids)`` before its
    forward, and :meth:`record` with the batch's softmax after its step.

    Args:
        ids: the global sample ids of this rank's training rows (``ShardBatches.ids``).
        num_classes: the number of classes ``C``.
        alpha_T: the final weight of the previous predictions.
        epochs: ``T``, the planned number of epochs.
    """

    def __init__(self, ids: torch.Tensor, num_classes: int, alpha_T: float, epochs: int) -> None:  # noqa: N803
        self.ids = torch.unique(torch.as_tensor(ids, dtype=torch.int64))  # sorted
        self.num_classes, self.alpha_T, self.epochs = num_classes, alpha_T, epochs
        self.table = torch.zeros(len(self.ids), num_classes)
        self.seen = torch.zeros(len(self.ids), dtype=torch.bool)
        self.alpha = 0.0

    def start_epoch(self, epoch: int) -> float:
        """Set ``alpha_t`` for the 1-based global ``epoch`` and return it."""
        self.alpha = alpha_at(self.alpha_T, epoch, self.epochs)
        return self.alpha

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(1 - alpha_t) onehot(y) + alpha_t p_{t-1}``, ``(N, C)`` on ``y``'s device."""
        if ids is None:
            raise ValueError(
                "PS-KD needs the sample id of every training row: build the train "
                "batches with with_ids=True"
            )
        rows = self._rows(ids)
        one_hot = F.one_hot(y, self.num_classes).float()
        previous = self.table[rows].to(y.device)
        previous = torch.where(self.seen[rows].to(y.device)[:, None], previous, one_hot)
        return (1 - self.alpha) * one_hot + self.alpha * previous

    def record(self, ids: torch.Tensor, probs: torch.Tensor) -> None:
        """Keep the batch's softmax predictions ``(N, C)`` for the next epoch's targets."""
        rows = self._rows(ids)
        self.table[rows] = probs.detach().float().cpu()
        self.seen[rows] = True

    def _rows(self, ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.int64).cpu()
        rows = torch.searchsorted(self.ids, ids).clamp_max(len(self.ids) - 1)
        if not torch.equal(self.ids[rows], ids):
            missing = ids[self.ids[rows] != ids][:5].tolist()
            raise KeyError(f"PS-KD: sample ids {missing} are not rows of this worker's shard")
        return rows

    def state_dict(self) -> dict:
        """Every rank's recorded rows (gathered: a collective call on every rank) and alpha."""
        ids, table = self.ids[self.seen], self.table[self.seen]
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (ids, table))
            ids = torch.cat([part[0] for part in parts])
            table = torch.cat([part[1] for part in parts])
        return {"ids": ids, "table": table, "alpha": self.alpha}

    def load_state_dict(self, state: dict) -> None:
        """Take this rank's rows from a checkpoint's (every rank's) table.

        Raises:
            ValueError: the table's class count differs from the model's.
        """
        table = state["table"]
        if table.dim() != 2 or table.shape[1] != self.num_classes:
            raise ValueError(
                f"PS-KD state holds predictions of shape {tuple(table.shape)}; this model has "
                f"{self.num_classes} classes"
            )
        ids = torch.as_tensor(state["ids"], dtype=torch.int64)
        rows = torch.searchsorted(self.ids, ids).clamp_max(len(self.ids) - 1)
        mine = self.ids[rows] == ids
        self.table[rows[mine]] = table[mine].float()
        self.seen[rows[mine]] = True
        self.alpha = float(state.get("alpha", 0.0))


def pskd_targets(cfg: TrainConfig, model, train_batches, num_classes: int, epochs: int):
    """The PS-KD target table for ``train_batches`` when ``cfg.self_distill == "pskd"``.

    Raises:
        SoftTargetsError: the model has no cross-entropy to distil into (``tell``, ``cbc``).
        ValueError: the batches do not carry sample ids.
    """
    if cfg.self_distill != "pskd":
        return None
    model.check_soft_targets()
    if not getattr(train_batches, "with_ids", False):
        raise ValueError(
            "train.self_distill=pskd needs training batches that carry sample ids "
            "(ShardBatches/ImageBatches with with_ids=True)"
        )
    return PSKDTargets(train_batches.ids, num_classes, cfg.pskd.alpha_T, epochs)
