"""Mini-batches of encoded images, decoded and augmented in parallel inside a training worker.

A worker holds its shard's *encoded* bytes (an Arrow binary array: JPEG/PNG files, not pixels)
and a ``torch.utils.data.DataLoader`` decodes (``torchvision.io``), resizes and augments them
(``transforms.v2``) in ``workers`` processes, ``prefetch`` batches ahead, into pinned memory
when the batches go to a GPU. The epoch order comes from the same seeded, padded permutation as
:class:`~components.training.batches.ShardBatches`, so data-parallel ranks take the same number
of steps and a resumed run sees the same order.

Memory: a worker keeps its shard's files in memory (a 1/``num_workers`` share of the dataset's
bytes: CUB-200 is 1.1 GB in all); the loader processes share those pages (fork).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from components.data.images import decode_rgb
from components.training.batches import epoch_order

Transform = Callable[[torch.Tensor], torch.Tensor]


class EncodedImages(Dataset):
    """Encoded images with their labels and ids; item ``i`` is decoded and transformed."""

    def __init__(self, images: pa.Array, labels: np.ndarray, ids: np.ndarray, transform) -> None:
        self.images, self.labels, self.ids, self.transform = images, labels, ids, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        pixels = decode_rgb(self.images[index].as_buffer())
        return self.transform(pixels), int(self.labels[index]), int(self.ids[index])


class _EpochSampler(Sampler[int]):
    """The padded seeded order of the current epoch (set by :meth:`ImageBatches.set_epoch`)."""

    def __init__(self, n: int, rows: int, shuffle: bool, seed: int) -> None:
        self.n, self.rows, self.shuffle, self.seed, self.epoch = n, rows, shuffle, seed, 0

    def __len__(self) -> int:
        return self.rows

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_order(self.n, self.rows, self.shuffle, self.seed + self.epoch).tolist())


class ImageBatches:
    """The :class:`~components.training.batches.ShardBatches` interface over encoded images.

    Args:
        images: the shard's encoded files (Arrow binary array).
        labels: ``(N,)`` int64 labels.
        ids: ``(N,)`` each row's position in its split (what a push records).
        batch_size: rows per batch.
        transform: the per-epoch transform (augmentation for training).
        eval_transform: the deterministic transform :meth:`in_order` (a push) uses.
        shuffle: reshuffle each epoch with ``seed + epoch``.
        seed: base seed of the permutation.
        pad_to: rows per epoch after padding (``None``: no padding).
        workers: decoding processes (0: decode in this process).
        prefetch: batches each process prepares ahead.
        pin_memory: page-lock batches for asynchronous copies to a GPU.
        with_ids: training batches are ``(x, y, ids)`` (PS-KD's per-sample targets), not
            ``(x, y)``.

    Raises:
        ValueError: the shard is empty.
    """

    def __init__(
        self,
        images: pa.Array,
        labels: np.ndarray,
        ids: np.ndarray,
        *,
        batch_size: int,
        transform: Transform,
        eval_transform: Transform,
        shuffle: bool,
        seed: int = 0,
        pad_to: int | None = None,
        workers: int = 0,
        prefetch: int = 2,
        pin_memory: bool = False,
        with_ids: bool = False,
    ) -> None:
        if len(labels) == 0:
            raise ValueError("cannot batch an empty shard")
        self.batch_size = batch_size
        self.with_ids = with_ids
        self.ids = torch.as_tensor(np.asarray(ids), dtype=torch.int64)
        self._options = {"num_workers": workers, "pin_memory": pin_memory}
        if workers:
            self._options["prefetch_factor"] = prefetch
        self._sampler = _EpochSampler(len(labels), max(pad_to or 0, len(labels)), shuffle, seed)
        self._train = EncodedImages(images, labels, ids, transform)
        self._eval = EncodedImages(images, labels, ids, eval_transform)
        self._loader: DataLoader | None = None

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of this epoch (deterministic, so a resumed run matches)."""
        self._sampler.epoch = epoch

    @property
    def labels(self) -> torch.Tensor:
        """The shard's labels, one per row (no padding)."""
        return torch.as_tensor(np.asarray(self._train.labels), dtype=torch.int64)

    def __len__(self) -> int:
        return -(-len(self._sampler) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self._loader is None:  # built once: its decoding processes live across epochs
            persistent = self._options["num_workers"] > 0
            self._loader = DataLoader(
                self._train,
                batch_size=self.batch_size,
                sampler=self._sampler,
                persistent_workers=persistent,
                **self._options,
            )
        for x, y, ids in self._loader:
            yield (x, y, ids) if self.with_ids else (x, y)

    def in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Every row once, unpadded, deterministically transformed, with its id (for a push)."""
        loader = DataLoader(self._eval, batch_size=self.batch_size, **self._options)
        yield from loader
