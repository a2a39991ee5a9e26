"""In-memory mini-batching of one worker's data shard."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch


def epoch_order(n: int, rows: int, shuffle: bool, seed: int) -> torch.Tensor:
    """One epoch's row order over ``n`` rows: a seeded permutation (or ``0..n-1``), padded to
    ``rows`` by repeating it (as ``DistributedSampler`` pads every rank to the same length)."""
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    if rows > n:
        order = torch.cat([order, order.repeat(rows // n + 1)[: rows - n]])
    return order


class ShardBatches:
    """Seeded, re-iterable mini-batches over tensors already in memory.

    ``pad_to`` repeats rows so every data-parallel worker runs the same number of steps per epoch
    (as ``DistributedSampler`` does); without it, DDP would hang on the rank with fewer batches.

    Args:
        x: inputs ``(N, ...)``.
        y: labels ``(N,)``.
        batch_size: rows per batch.
        shuffle: reshuffle each epoch with ``seed + epoch``.
        seed: base seed of the permutation.
        pad_to: total rows per epoch after padding (``None``: no padding).
        ids: global sample id of every row (default ``0..N-1``), yielded by :meth:`in_order`.
        with_ids: training batches are ``(x, y, ids)`` (PS-KD's per-sample targets), not
            ``(x, y)``.
        transform: applied to every sample of the shuffled batches (training augmentation,
            drawn from torch's global generator, which the fit loop seeds per epoch); never
            to :meth:`in_order`.
    """

    def __init__(
        self,
        x: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        pad_to: int | None = None,
        ids: torch.Tensor | None = None,
        with_ids: bool = False,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.x = torch.as_tensor(x)
        self.y = torch.as_tensor(y)
        if len(self.x) == 0:
            raise ValueError("cannot batch an empty shard")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rows = max(pad_to or 0, len(self.x))
        self.ids = torch.arange(len(self.x)) if ids is None else torch.as_tensor(ids)
        self.with_ids = with_ids
        self.transform = transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of this epoch (deterministic, so a resumed run matches)."""
        self.epoch = epoch

    @property
    def labels(self) -> torch.Tensor:
        """The shard's labels, one per row (no padding)."""
        return self.y

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = epoch_order(len(self.x), self.rows, self.shuffle, self.seed + self.epoch)
        for start in range(0, self.rows, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.x[idx]
            if self.transform is not None:
                x = torch.stack([self.transform(sample) for sample in x])
            yield (x, self.y[idx], self.ids[idx])[: 3 if self.with_ids else 2]

    def in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Every row once, unshuffled and unpadded, with its global sample id (for a push)."""
        for start in range(0, len(self.x), self.batch_size):
            end = start + self.batch_size
            yield self.x[start:end], self.y[start:end], self.ids[start:end]
