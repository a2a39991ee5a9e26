"""Write an image dataset: encoded bytes, path and label in Parquet shards, validated with Dask.

The rows of every split (a seeded random order, so streams see the classes mixed) are cut into
shards of ``partition_rows`` images; one Dask task per shard reads its images' bytes, decodes
each one to check it (readable, at least ``image_size`` on both sides), adds the pixels of the
train rows to a per-channel histogram and writes its own Parquet part. A task holds one shard;
the driver holds only paths and labels. The bytes are stored exactly as read, never re-encoded.

An image folder with ``masks/`` (:mod:`components.data.image_folder`) also gets a ``mask``
column: each image's mask, decoded, checked to be the image's size and brought to
``image_size x image_size`` by the geometry of the evaluation transform (nearest-neighbour
resize of the shorter side, centre crop), so :func:`components.data.reader.read_masks` returns
it aligned pixel for pixel with the decoded image. A bad mask is an error whatever
``drop_invalid`` says: masks are all or none.

Each task also digests the bytes it writes, so byte-identical images in train and val/test, or
under two classes, are found and reported (:mod:`components.data.duplicates`).

Normalisation statistics (``normalization.source == "dataset"``) are those of the train
split's decoded pixels *at full resolution*, scaled to [0, 1]: exact (from per-channel
histograms of the uint8 values) and computed without resizing anything.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from dask.callbacks import Callback

from components.data.duplicates import ImageDigest, digest, find_duplicates
from components.data.errors import DataError
from components.data.image_transforms import Transform, mask_transform
from components.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    decode_mask,
    decode_rgb,
)
from components.data.layout import (
    IMAGE_COLUMN,
    MASK_COLUMN,
    PATH_COLUMN,
    SPLITS,
    Y_COLUMN,
    part_name,
    split_dir,
)
from components.data.spec import DataSpec
from components.data.splits import fixed_splits, planned_split
from components.data.stats import Moments
from components.data.writer import _fixed_size_lists, build_meta

# Why a row was left out (meta ``dropped_by_reason``); ``dropped_files`` has the details.
IMAGE_DROP_REASONS = ("not_an_image", "unreadable", "too_small", "invalid_label")
# Each worker holds one shard; cap them so memory stays bounded on many-core machines.
MAX_WORKERS = 8
# Dask scheduler of the shard tasks, measured side by side by bench/image_ingest.py (100,000
# JPEGs of 32x32, 2 cores): threads 6,250 images/s at 0.97 GiB peak RSS, processes 3,486
# images/s at 2.22 GiB summed over the processes (each worker imports torch to decode, and
# starting them costs seconds). The per-image work is mostly torchvision and numpy calls that
# hold the GIL, so threads add little parallelism, but they overlap file reads for free.
SCHEDULER = "threads"
# Readers stream parts one row group at a time: 256 photos of ~100 KB keep that near 25 MB.
_ROW_GROUP_ROWS = 256
_SHOWN_BAD = 10
_CHANNEL_OFFSETS = np.array([[0], [256], [512]], np.intp)


@dataclass(frozen=True)
class BadImage:
    """A file (or table row) that is not a usable image.

    Attributes:
        path: Its ``path`` value (relative to the folder, or the table's path / row index).
        reason: One of :data:`IMAGE_DROP_REASONS`.
        detail: What is wrong, in words.
        side: ``too_small``: the image's shorter side in pixels.
    """

    path: str
    reason: str
    detail: str
    side: int | None = None


@dataclass(frozen=True)
class ImageRows:
    """The candidate rows of an image source, before any image is read.

    Attributes:
        paths: The ``path`` value of each row.
        labels: int64 class index of each row.
        class_names: Name of each class index.
        layout: ``class_folders``, ``split_folders``, ``parquet`` or ``parquet_split_files``
            (files named for their split) (recorded in the meta).
        where: The source (folder or file), for messages.
        unit: What a row is called in messages (``files`` or ``rows``).
        splits: Per row, the split its source fixes, or ``None`` for a stratified split.
        given_splits: The splits the source fixes; the others are carved out of train.
        root: Folder sources: rows are the files ``root / path``.
        blobs: Table sources: the encoded bytes of each row (a binary Arrow column).
        rejected: Rows known to be invalid before reading (e.g. a ``.txt`` in a class folder).
        ignored: Entries of the source not meant as data (hidden files, a README).
        masks: Folder sources with ``masks/``: each row's mask file, relative to ``root``.
    """

    paths: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    layout: str
    where: str
    unit: str = "files"
    splits: tuple[str, ...] | None = None
    given_splits: tuple[str, ...] = ()
    root: Path | None = None
    blobs: pa.Array | pa.ChunkedArray | None = None
    rejected: tuple[BadImage, ...] = ()
    ignored: int = 0
    masks: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Shard:
    """One Dask task's work: the rows of one Parquet part of one split."""

    split: str
    index: int
    paths: tuple[str, ...]
    labels: np.ndarray
    root: Path | None = None
    blobs: pa.Array | pa.ChunkedArray | None = None
    masks: tuple[str, ...] | None = None

    def read(self) -> Iterator[bytes | BadImage]:
        """Each row's encoded bytes, or why they cannot be had."""
        for i, path in enumerate(self.paths):
            if self.blobs is not None:
                value = self.blobs[i].as_py()
                yield value if value is not None else BadImage(path, "unreadable", "no bytes")
                continue
            try:
                with open(os.path.join(self.root, path), "rb", buffering=0) as handle:
                    yield handle.read()
            except OSError as err:
                yield BadImage(path, "unreadable", f"cannot read the file: {err.strerror or err}")


@dataclass(frozen=True)
class ShardSummary:
    """What a task reports: valid rows per class, train pixel moments, invalid rows, or the
    bad mask that stopped it (returned, not raised, so no task still writes once the ingest
    has failed and its staging folder is being removed)."""

    split: str
    class_counts: np.ndarray
    moments: Moments
    bad: tuple[BadImage, ...] = field(default=())
    mask_error: DataError | None = None
    digests: tuple[ImageDigest, ...] = ()  # the written images, for finding duplicates


def write_image_dataset(
    spec: DataSpec,
    rows: ImageRows,
    root: Path,
    fingerprint: str,
    progress: Callable[[str], None],
) -> dict:
    """Validate and write the image rows of ``rows`` under ``root``; return the dataset's meta.

    Raises:
        DataError: Some rows are invalid (unless ``spec.drop_invalid``), a class has too few
            rows for the splits, or dropping left a class without rows in a split.
    """
    if rows.ignored:
        progress(
            f"ignored {rows.ignored} file{'s' if rows.ignored != 1 else ''}: hidden files, "
            "files outside class folders (hidden folders count as one)"
        )
    plan = planned_split(
        spec,
        rows.labels,
        rows.splits,
        class_names=rows.class_names,
        file=rows.where,
        given=rows.given_splits,
    )
    shards = make_shards(rows, plan, spec.partition_rows)
    progress(
        f"validating and writing {len(rows.paths)} images in {len(shards)} "
        f"shard{'s' if len(shards) != 1 else ''}"
    )
    summaries = _run_shards(shards, root, spec.image_size, len(rows.class_names), progress)
    for summary in summaries:
        if summary.mask_error is not None:
            raise summary.mask_error
    bad = [*rows.rejected, *(b for s in summaries for b in s.bad)]
    if bad and not spec.drop_invalid:
        _raise_bad(bad, len(rows.paths) + len(rows.rejected), rows, spec.image_size)
    counts = _check_left(rows, plan, summaries)
    meta = _image_meta(spec, rows, fingerprint, summaries, counts, bad)
    duplicates = find_duplicates((d for s in summaries for d in s.digests), rows.class_names)
    if duplicates:
        meta["duplicates"] = duplicates
    return meta


def make_shards(rows: ImageRows, plan: dict[str, np.ndarray], partition_rows: int) -> list[Shard]:
    """Cut every split's rows, in order, into shards of at most ``partition_rows``."""
    shards = []
    for split, idx in plan.items():
        for index, start in enumerate(range(0, len(idx), partition_rows)):
            take = idx[start : start + partition_rows]
            shards.append(
                Shard(
                    split=split,
                    index=index,
                    paths=tuple(rows.paths[i] for i in take),
                    labels=rows.labels[take],
                    root=rows.root,
                    blobs=None if rows.blobs is None else rows.blobs.take(pa.array(take)),
                    masks=None if rows.masks is None else tuple(rows.masks[i] for i in take),
                )
            )
    return shards


def histogram_moments(histogram: np.ndarray) -> Moments:
    """Per-channel :class:`Moments` of pixels in [0, 1] from ``(C, 256)`` uint8 value counts."""
    count = int(histogram[0].sum())
    if count == 0:
        return Moments.empty(len(histogram))
    values = np.arange(256) / 255.0
    mean = histogram @ values / count
    m2 = (histogram * (values[None, :] - mean[:, None]) ** 2).sum(axis=1)
    return Moments(count, mean, m2)


def write_shard(shard: Shard, root: Path, image_size: int, num_classes: int) -> ShardSummary:
    """Check every image of ``shard``, write the valid ones as its Parquet part, summarise.

    Runs in a Dask worker (thread or process); it holds the shard's encoded bytes and one
    decoded image at a time.
    """
    keep, blobs, masks, bad, digests = [], [], [], [], []
    histogram = np.zeros((3, 256), np.int64)
    resize = mask_transform(image_size)
    for i, data in enumerate(shard.read()):
        checked = data if isinstance(data, BadImage) else _check(shard.paths[i], data, image_size)
        if isinstance(checked, BadImage):
            bad.append(checked)
            continue
        keep.append(i)
        blobs.append(data)
        label = int(shard.labels[i])
        digests.append(ImageDigest(shard.split, shard.paths[i], label, digest(data)))
        if shard.masks is not None:
            try:
                masks.append(read_mask(shard, i, checked.shape[1:], resize))
            except DataError as err:
                empty = np.zeros(num_classes, np.int64)
                return ShardSummary(shard.split, empty, Moments.empty(3), mask_error=err)
        if shard.split == "train":
            histogram += _channel_histogram(checked)
    if keep:
        _write_part(shard, keep, blobs, masks if shard.masks is not None else None, root)
    counts = np.bincount(shard.labels[keep], minlength=num_classes)
    moments = histogram_moments(histogram)
    return ShardSummary(shard.split, counts, moments, tuple(bad), digests=tuple(digests))


def read_mask(shard: Shard, i: int, image_shape: tuple[int, int], resize: Transform) -> np.ndarray:
    """The mask of row ``i`` brought to the dataset's size by ``resize`` (a
    :func:`~components.data.image_transforms.mask_transform`), flat uint8.

    Raises:
        DataError: The mask cannot be read or decoded, or is not the size of its image.
    """
    assert shard.masks is not None and shard.root is not None
    path = os.path.join(shard.root, shard.masks[i])
    try:
        with open(path, "rb", buffering=0) as handle:
            mask = decode_mask(handle.read())
    except OSError as err:
        raise DataError(f"cannot read the mask: {err.strerror or err}", file=path) from err
    except ImageDecodeError as err:
        raise DataError(f"unusable mask of {shard.paths[i]}: {err}", file=path) from err
    if tuple(mask.shape) != tuple(image_shape):
        raise DataError(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} pixels, its image {shard.paths[i]} "
            f"{image_shape[1]}x{image_shape[0]}; a mask must be the size of its image",
            file=path,
        )
    return resize(mask).reshape(-1).numpy()


def _check(path: str, data: bytes, image_size: int) -> BadImage | np.ndarray:
    """The decoded uint8 pixels ``(3, H, W)``, or why the bytes are not a usable image."""
    try:
        pixels = decode_rgb(data).numpy()
    except ImageDecodeError as err:
        return BadImage(path, "unreadable", str(err))
    height, width = pixels.shape[1:]
    if min(height, width) < image_size:
        detail = f"{width}x{height} pixels, smaller than image_size={image_size}"
        return BadImage(path, "too_small", detail, side=min(height, width))
    return pixels


def _channel_histogram(pixels: np.ndarray) -> np.ndarray:
    """``(3, 256)`` counts of each uint8 value per channel, in one ``bincount`` call."""
    if pixels.dtype == np.uint16:  # 16-bit PNGs: keep the high byte, as ToDtype(scale) does
        pixels = (pixels >> 8).astype(np.uint8)
    flat = pixels.reshape(3, -1).astype(np.intp)
    flat += _CHANNEL_OFFSETS
    return np.bincount(flat.reshape(-1), minlength=3 * 256).reshape(3, 256)


def _write_part(
    shard: Shard, keep: list[int], blobs: list[bytes], masks: list | None, root: Path
) -> None:
    columns = {
        IMAGE_COLUMN: pa.array(blobs, pa.binary()),
        PATH_COLUMN: pa.array([shard.paths[i] for i in keep], pa.string()),
        Y_COLUMN: pa.array(shard.labels[keep].astype(np.int64)),
    }
    if masks is not None:
        columns[MASK_COLUMN] = _fixed_size_lists(np.stack(masks), np.uint8)
    table = pa.table(columns)
    folder = split_dir(root, shard.split)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        folder / part_name(shard.index),
        row_group_size=_ROW_GROUP_ROWS,
        use_dictionary=[Y_COLUMN],
    )


def _run_shards(
    shards: list[Shard],
    root: Path,
    image_size: int,
    num_classes: int,
    progress: Callable[[str], None],
) -> list[ShardSummary]:
    """Run :func:`write_shard` on every shard with Dask (see :data:`SCHEDULER`)."""
    task = dask.delayed(write_shard, pure=False)
    tasks = [task(s, root, image_size, num_classes) for s in shards]
    workers = max(1, min(os.cpu_count() or 1, MAX_WORKERS, len(shards)))
    with _Progress(len(shards), progress):
        return list(dask.compute(*tasks, scheduler=SCHEDULER, num_workers=workers))


class _Progress(Callback):
    """'k/n shards written', about 20 times per run (Dask calls it on the driver)."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        super().__init__()
        self._total, self._say, self._done = total, say, 0
        self._every = max(1, total // 20)

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        self._done += 1
        if self._done % self._every == 0 or self._done == self._total:
            self._say(f"images: {self._done}/{self._total} shards written")


def _raise_bad(bad: list[BadImage], total: int, rows: ImageRows, image_size: int) -> None:
    shown = "; ".join(f"{b.path} ({b.detail})" for b in bad[:_SHOWN_BAD])
    more = f"; and {len(bad) - _SHOWN_BAD} more" if len(bad) > _SHOWN_BAD else ""
    small = [b.side for b in bad if b.side is not None]
    smaller = (
        f"; {len(small)} of them are smaller than data.image_size={image_size}: "
        f"data.image_size={min(small)} keeps every one, or"
        if small
        else ";"
    )
    raise DataError(
        f"{len(bad)} of {total} {rows.unit} are not usable images: {shown}{more}{smaller} "
        "set data.drop_invalid=true to drop them",
        file=rows.where,
    )


def _check_left(
    rows: ImageRows, plan: dict[str, np.ndarray], summaries: list[ShardSummary]
) -> dict[str, np.ndarray]:
    """Valid rows per split and class; raise if dropping emptied a class in a split."""
    num_classes = len(rows.class_names)
    counts = {split: np.zeros(num_classes, np.int64) for split in SPLITS}
    for summary in summaries:
        counts[summary.split] += summary.class_counts
    for split, idx in plan.items():
        planned = np.bincount(rows.labels[idx], minlength=num_classes)
        lost = np.flatnonzero((planned > 0) & (counts[split] == 0))
        emptied = [rows.class_names[k] for k in lost]
        if emptied:
            raise DataError(
                f"after dropping invalid {rows.unit}, classes {emptied} have no images left in "
                f"the {split} split",
                file=rows.where,
            )
    return counts


def _image_meta(
    spec: DataSpec,
    rows: ImageRows,
    fingerprint: str,
    summaries: list[ShardSummary],
    counts: dict[str, np.ndarray],
    bad: list[BadImage],
) -> dict:
    """``meta.json`` of an image dataset (see the dataset contract in DESIGN.md)."""
    size = spec.image_size
    train = functools.reduce(Moments.merge, (s.moments for s in summaries), Moments.empty(3))
    meta = build_meta(
        spec=spec,
        fingerprint=fingerprint,
        feature_shape=(3, size, size),
        class_names=rows.class_names,
        train_moments=train,
        row_counts={split: int(c.sum()) for split, c in counts.items()},
        dropped_by_reason={r: sum(b.reason == r for b in bad) for r in IMAGE_DROP_REASONS},
    )
    if spec.normalization == "imagenet":
        meta["normalization"] = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    meta["normalization"]["source"] = spec.normalization
    meta.update(
        kind="image",
        image_size=size,
        layout=rows.layout,
        dropped_files=[{"path": b.path, "reason": b.detail} for b in bad],
        ignored_files=rows.ignored,
    )
    if rows.splits is not None:
        meta["fixed_splits"] = fixed_splits(rows.given_splits or rows.splits)
    if rows.masks is not None:
        meta["mask_shape"] = [size, size]
    return meta
