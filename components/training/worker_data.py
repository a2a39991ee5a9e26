"""What one data-parallel training worker reads: its shard of the train and val splits.

Array datasets are read into memory (:class:`ShardBatches`); image datasets keep their encoded
files and decode them in the worker's loader processes (:class:`ImageBatches`), with the
configured augmentation for training and the deterministic transform for validation and push.

What is read from disk (arrays, or encoded files) is kept per process, keyed by the dataset's
folder and content fingerprint: a reused Ray Tune actor trains trial after trial on the same
splits and reads them once. The batches themselves (batch size, seed, augmentation) are built
afresh for every call.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from components.data.image_transforms import (
    eval_transform,
    tensor_augmentation,
    train_transform,
)
from components.data.layout import split_files
from components.data.reader import (
    DatasetMeta,
    load_meta,
    read_encoded,
    read_labels,
    read_split,
    shard_rows,
)
from components.training.batches import ShardBatches
from components.training.config import TrainConfig
from components.training.image_batches import ImageBatches
from components.training.label_fraction import shard_keep


def worker_batches(
    path: str | Path,
    cfg: TrainConfig,
    rank: int = 0,
    world: int = 1,
    *,
    augment: str = "none",
    pin_memory: bool = False,
):
    """The train batches (shuffled, padded to the largest shard) and val batches of ``rank``.

    Args:
        path: the dataset folder.
        cfg: batch size, seed, decoding processes.
        rank: this worker's rank; ``world``: how many there are.
        augment: image datasets: the training augmentation (``none``, ``light``,
            ``protopnet``).
        pin_memory: page-lock image batches (they go to a GPU).
    """
    meta = load_meta(path)
    if meta.is_image:
        return _image_batches(path, meta, cfg, rank, world, augment, pin_memory)
    x, y = _read_once(read_split, path, meta, "train", rank, world)
    ids = torch.arange(len(y)) * world + rank  # read_split's shard rule: row i % world
    pad_to = math.ceil(meta.row_counts["train"] / world)
    if cfg.label_fraction < 1.0:
        shards = [np.arange(k, meta.row_counts["train"], world) for k in range(world)]
        keep, pad_to = _labelled(path, cfg, shards, rank)
        x, y, ids = x[keep], y[keep], ids[torch.from_numpy(keep)]
    train = ShardBatches(
        x,
        y,
        batch_size=cfg.batch_size,
        shuffle=True,
        seed=cfg.seed * 1000 + rank,
        pad_to=pad_to,
        ids=ids,
        with_ids=cfg.self_distill == "pskd" or cfg.xnesyl.enabled,  # per-sample tables
        transform=_array_augmentation(meta, augment),
    )
    vx, vy = _read_once(read_split, path, meta, "val", rank, world)
    return train, ShardBatches(vx, vy, batch_size=max(cfg.batch_size, 256), shuffle=False)


def _array_augmentation(meta: DatasetMeta, augment: str):
    """``augment`` on an array dataset of images ``(C, H, W)``; other shapes are not images."""
    shape = tuple(meta.feature_shape)
    return tensor_augmentation(shape[1:], augment) if len(shape) == 3 else None


def _image_batches(path, meta: DatasetMeta, cfg, rank, world, augment, pin_memory):
    size, mean, std = meta.feature_shape[-1], meta.channel_mean, meta.channel_std
    deterministic = eval_transform(size, mean, std)
    options = {
        "batch_size": cfg.batch_size,
        "eval_transform": deterministic,
        "workers": cfg.decode_workers,
        "prefetch": cfg.prefetch_batches,
        "pin_memory": pin_memory,
    }
    images, y, rows, largest = _read_once(read_encoded, path, meta, "train", rank, world)
    if cfg.label_fraction < 1.0:
        counts = [pq.ParquetFile(f).metadata.num_rows for f in split_files(path, "train")]
        shards = [shard_rows(counts, k, world) for k in range(world)]
        keep, largest = _labelled(path, cfg, shards, rank)
        images, y, rows = images.filter(pa.array(keep)), y[keep], rows[keep]
    train = ImageBatches(
        images,
        y,
        rows,
        transform=train_transform(size, mean, std, augment),
        shuffle=True,
        seed=cfg.seed * 1000 + rank,
        pad_to=largest,
        with_ids=cfg.self_distill == "pskd",
        **options,
    )
    images, y, rows, _ = _read_once(read_encoded, path, meta, "val", rank, world)
    val = ImageBatches(images, y, rows, transform=deterministic, shuffle=False, **options)
    return train, val


def _labelled(path, cfg: TrainConfig, shards: list[np.ndarray], rank: int):
    """``train.label_fraction``: this rank's rows that keep their labels, and the largest kept
    shard (every rank pads to it)."""
    return shard_keep(read_labels(path, "train"), cfg.label_fraction, cfg.seed, shards, rank)


_READS: dict[tuple, tuple] = {}
_READS_LOCK = threading.Lock()


def _read_once(read: Callable, path, meta: DatasetMeta, split: str, rank: int, world: int):
    """``read(path, split, shard)``, from this process's memory after the first time.

    Only one dataset is kept: reading another (or the same folder re-ingested with other
    content, hence another fingerprint) drops the previous one's splits.
    """
    dataset = (str(Path(path).resolve()), meta.fingerprint)
    key = (dataset, read.__name__, split, rank, world)
    with _READS_LOCK:
        if any(old[0] != dataset for old in _READS):
            _READS.clear()
        if key not in _READS:
            _READS[key] = read(path, split, shard_index=rank, num_shards=world)
        return _READS[key]


def clear_read_cache() -> None:
    """Forget every split this process kept (tests; a process done with its dataset)."""
    with _READS_LOCK:
        _READS.clear()
