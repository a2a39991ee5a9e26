"""Read an ingested dataset: typed meta, whole splits, or bounded-memory batch streams."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import torch

from components.data.errors import DataError
from components.data.layout import (
    IMAGE_COLUMN,
    MASK_COLUMN,
    META_FILE,
    SPLITS,
    X_COLUMN,
    Y_COLUMN,
    split_files,
)

_REQUIRED_KEYS = (
    "feature_shape",
    "num_classes",
    "class_names",
    "normalization",
    "row_counts",
    "fingerprint",
)
# Arrow record batches of about this many bytes: big enough that per-batch overhead vanishes
# for small batch sizes, small enough to keep streaming memory bounded for wide samples.
_SCAN_BYTES = 4 << 20


@dataclass(frozen=True)
class DatasetMeta:
    """Typed view of a dataset's ``meta.json``.

    Attributes:
        feature_shape: Shape of one sample, e.g. ``(1, 8, 8)``.
        num_classes: Number of classes.
        class_names: Name of each class index.
        mean: Per-feature train-split mean of the flattened features, float32.
        std: Per-feature train-split std (constant features have 1.0), float32.
        row_counts: Rows per split.
        fingerprint: Content fingerprint of the source and spec.
        raw: The whole ``meta.json`` as loaded.
    """

    feature_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    row_counts: dict[str, int]
    fingerprint: str
    raw: dict

    @property
    def num_features(self) -> int:
        """Number of flattened features per sample."""
        return math.prod(self.feature_shape)

    @property
    def is_image(self) -> bool:
        """Whether rows hold encoded image files (decoded when read) rather than ``x``."""
        return self.raw.get("kind") == "image"

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """Each feature's name (a table's column names) when ``meta.json`` records one per
        feature; ``None`` otherwise (images, signals, datasets ingested before names were kept)."""
        return named_features(self.raw, self.feature_shape)

    @property
    def categorical(self) -> dict[str, tuple[str, str]]:
        """The 0/1 features that one-hot encode a categorical column (:func:`word_features`)."""
        return word_features(self.raw, self.feature_names)

    @property
    def channel_mean(self) -> np.ndarray:
        """Per-channel mean ``(C,)`` of an image dataset (pixels in [0, 1])."""
        return self.mean.reshape(self.feature_shape[0], -1)[:, 0]

    @property
    def channel_std(self) -> np.ndarray:
        """Per-channel std ``(C,)`` of an image dataset."""
        return self.std.reshape(self.feature_shape[0], -1)[:, 0]


def load_meta(path: str | Path) -> DatasetMeta:
    """Load and check the ``meta.json`` of the dataset folder ``path``.

    Raises:
        DataError: The folder or its meta is missing or malformed.
    """
    root = Path(path)
    meta_file = root / META_FILE
    if not root.is_dir():
        raise DataError("dataset folder does not exist", file=str(root))
    if not meta_file.is_file():
        raise DataError("meta.json is missing: not a complete dataset folder", file=str(meta_file))
    try:
        raw = json.loads(meta_file.read_text())
    except ValueError as err:
        raise DataError(f"meta.json is not valid JSON: {err}", file=str(meta_file)) from err
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise DataError(f"meta.json lacks the keys {missing}", file=str(meta_file))
    try:
        meta = DatasetMeta(
            feature_shape=tuple(int(d) for d in raw["feature_shape"]),
            num_classes=int(raw["num_classes"]),
            class_names=tuple(str(n) for n in raw["class_names"]),
            mean=per_feature(raw["normalization"]["mean"], raw["feature_shape"]),
            std=per_feature(raw["normalization"]["std"], raw["feature_shape"]),
            row_counts={split: int(raw["row_counts"].get(split, 0)) for split in SPLITS},
            fingerprint=str(raw["fingerprint"]),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"meta.json has a malformed value: {err!r}", file=str(meta_file)) from err
    for name in ("mean", "std"):
        if getattr(meta, name).shape != (meta.num_features,):
            raise DataError(
                f"normalization {name} has {getattr(meta, name).size} values, expected "
                f"{meta.num_features} (one per feature)",
                file=str(meta_file),
            )
    return meta


def named_features(raw: Mapping, feature_shape) -> tuple[str, ...] | None:
    """The ``feature_names`` of a ``meta.json``'s contents when they name every feature of a
    flat sample; ``None`` otherwise (none recorded, a reshaped sample, a hand-edited list)."""
    names = raw.get("feature_names")
    shape = tuple(int(d) for d in feature_shape)
    if len(shape) != 1 or not isinstance(names, list) or len(names) != shape[0]:
        return None
    return tuple(str(name) for name in names)


def word_features(raw: Mapping, names: Sequence[str] | None) -> dict[str, tuple[str, str]]:
    """The features of ``names`` that one-hot encode a word column of a ``meta.json``'s
    ``categories``: ``column=word`` -> ``(column, word)``; empty for datasets without (or
    ingested before) categories."""
    categories = raw.get("categories")
    if not names or not isinstance(categories, Mapping):
        return {}
    pairs = {
        f"{column}={word}": (str(column), str(word))
        for column, words in categories.items()
        if isinstance(words, list)
        for word in words
    }
    return {name: pairs[name] for name in names if name in pairs}


def index_note(columns: Sequence[str]) -> str:
    """What the log and the report say of the ``index_columns`` an ingest left out."""
    named = ", ".join(repr(c) if c else "the column with no name" for c in columns)
    return (
        f"Left out {named}: a saved row index, not data (name it in data.feature_columns to "
        "use it as a feature)"
    )


def per_feature(values, feature_shape) -> np.ndarray:
    """Normalisation statistics per flattened feature, float32; image datasets store one per
    channel (``len == C``), which is broadcast over the ``(C, H, W)`` pixels."""
    values = np.asarray(values, dtype=np.float32)
    shape = tuple(int(d) for d in feature_shape)
    if len(shape) == 3 and values.shape == (shape[0],) and math.prod(shape) != shape[0]:
        return np.repeat(values, shape[1] * shape[2])
    return values


def read_split(
    path: str | Path,
    split: str,
    *,
    normalize: bool = True,
    shard_index: int = 0,
    num_shards: int = 1,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a whole split (or one shard of it, or its first rows) into memory.

    Image datasets are decoded here (resize, centre crop, standardise: the deterministic
    transform of :func:`components.data.image_transforms.eval_transform`); prefer ``limit``,
    :func:`read_rows` or :func:`iter_batches` for them, as a decoded split can be large.

    Args:
        path: The dataset folder.
        split: ``train``, ``val`` or ``test``.
        normalize: Standardise features with the train-split mean and std from the meta.
        shard_index: Which shard to return.
        num_shards: Shard ``k`` holds the rows ``i`` with ``i % num_shards == k`` in the split's
            stable row order, so the shards partition the split.
        limit: Return at most this many rows (the first ones of the shard); ``None``: all.

    Returns:
        ``x`` float32 ``(N, *feature_shape)`` and ``y`` int64 ``(N,)``.
    """
    meta = load_meta(path)
    _check_args(split, shard_index, num_shards)
    chunks = _chunks(Path(path), meta, split, normalize, shard_index, num_shards, 1)
    chunks = list(_first_rows(chunks, limit)) if limit is not None else list(chunks)
    if not chunks:
        return np.empty((0, *meta.feature_shape), np.float32), np.empty(0, np.int64)
    x = np.concatenate([c[0] for c in chunks]).reshape(-1, *meta.feature_shape)
    y = np.concatenate([c[1] for c in chunks])
    return x, y


def read_rows(
    path: str | Path, split: str, rows, *, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Read the given rows of a split (positions in its stable order), in the order given.

    Only those rows are decoded, so this is how to fetch a few images (e.g. the training images
    prototypes were pushed onto) without decoding the split.

    Raises:
        IndexError: A row is outside the split.
    """
    meta = load_meta(path)
    _check_args(split, 0, 1)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    count = meta.row_counts[split]
    if rows.size and (rows.min() < 0 or rows.max() >= count):
        raise IndexError(f"rows {rows.tolist()} outside split {split!r} of {count} rows")
    files = split_files(path, split)
    if not rows.size or not files:
        return np.empty((0, *meta.feature_shape), np.float32), np.empty(0, np.int64)
    column = IMAGE_COLUMN if meta.is_image else X_COLUMN
    table = ds.dataset([str(f) for f in files], format="parquet").take(
        rows, columns=[column, Y_COLUMN]
    )
    x = _decode_features(table.column(0).combine_chunks(), meta, len(rows), normalize, str(path))
    y = table.column(1).to_numpy().astype(np.int64)
    return x.reshape(-1, *meta.feature_shape), y


def read_labels(path: str | Path, split: str) -> np.ndarray:
    """The labels of a split in its stable row order, without reading (or decoding) inputs."""
    _check_args(split, 0, 1)
    files = [str(f) for f in split_files(path, split)]
    if not files:
        return np.empty(0, np.int64)
    table = ds.dataset(files, format="parquet").to_table(columns=[Y_COLUMN])
    return table.column(0).to_numpy().astype(np.int64)


def read_encoded(
    path: str | Path, split: str, *, shard_index: int = 0, num_shards: int = 1
) -> tuple[pa.Array, np.ndarray, np.ndarray, int]:
    """One shard of an image split as encoded bytes (decoding is the caller's, in its workers).

    When the split has at least ``num_shards`` Parquet files, shard ``k`` reads only the files
    ``k, k + num_shards, ...`` (each data-parallel worker reads its own files); otherwise rows
    are dealt out as in :func:`read_split` (row ``i`` to shard ``i % num_shards``).

    Returns:
        ``images`` (an Arrow binary array), ``y`` int64, ``rows`` (each row's position in the
        split's stable order, the ids a push records) and the largest shard's row count (what
        every shard pads an epoch to, so data-parallel ranks take the same number of steps).

    Raises:
        DataError: The dataset does not hold encoded images.
    """
    meta = load_meta(path)
    _check_args(split, shard_index, num_shards)
    if not meta.is_image:
        raise DataError(
            "read_encoded needs an image dataset (meta.json kind 'image')", file=str(path)
        )
    files = split_files(path, split)
    counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    owned = shard_rows(counts, shard_index, num_shards)
    largest = max(len(shard_rows(counts, k, num_shards)) for k in range(num_shards))
    if not len(owned):
        return pa.array([], pa.binary()), np.empty(0, np.int64), owned, largest
    starts = np.concatenate([[0], np.cumsum(counts)])
    tables = []
    for index, file in enumerate(files):
        local = owned[(owned >= starts[index]) & (owned < starts[index + 1])] - starts[index]
        if len(local):
            table = pq.read_table(file, columns=[IMAGE_COLUMN, Y_COLUMN])
            tables.append(table.take(local))
    table = pa.concat_tables(tables)
    images = table.column(IMAGE_COLUMN).combine_chunks()
    return images, table.column(Y_COLUMN).to_numpy().astype(np.int64), owned, largest


def shard_rows(file_rows: list[int], shard_index: int, num_shards: int) -> np.ndarray:
    """Positions (in the split's order) of the rows shard ``shard_index`` owns: whole files
    ``k::num_shards`` when there are enough files, else rows ``k::num_shards``."""
    starts = np.concatenate([[0], np.cumsum(file_rows, dtype=np.int64)])
    if len(file_rows) < num_shards:
        return np.arange(shard_index, starts[-1], num_shards, dtype=np.int64)
    owned = range(shard_index, len(file_rows), num_shards)
    return np.concatenate(
        [np.arange(starts[i], starts[i + 1], dtype=np.int64) for i in owned]
        or [np.empty(0, np.int64)]
    )


def read_masks(path: str | Path, split: str) -> np.ndarray:
    """Read the ground-truth masks of a split, aligned with the rows of :func:`read_split`.

    Args:
        path: The dataset folder.
        split: ``train``, ``val`` or ``test``.

    Returns:
        uint8 ``(N, H, W)``, with ``(H, W)`` from the meta's ``mask_shape`` (default: the last
        two dimensions of the feature shape).

    Raises:
        DataError: The dataset has no mask column, or its masks have the wrong size.
    """
    meta = load_meta(path)
    _check_args(split, 0, 1)
    shape = tuple(int(d) for d in meta.raw.get("mask_shape", meta.feature_shape[-2:]))
    files = split_files(path, split)
    if not files:
        return np.empty((0, *shape), np.uint8)
    dataset = ds.dataset([str(f) for f in files], format="parquet")
    if MASK_COLUMN not in dataset.schema.names:
        raise DataError("the dataset has no ground-truth masks", file=str(path), column=MASK_COLUMN)
    batches = dataset.to_batches(columns=[MASK_COLUMN])
    flat = np.concatenate([b.column(0).flatten().to_numpy() for b in batches])
    rows = meta.row_counts[split]
    if flat.size != rows * math.prod(shape):
        raise DataError(
            f"masks hold {flat.size} values, expected {rows} rows of {list(shape)}",
            file=str(path),
            column=MASK_COLUMN,
            rows=rows,
        )
    return flat.astype(np.uint8, copy=False).reshape(rows, *shape)


def iter_batches(
    path: str | Path,
    split: str,
    batch_size: int,
    *,
    normalize: bool = True,
    shard_index: int = 0,
    num_shards: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stream a split (or one shard) as tensors, holding only a few batches in memory.

    Batches come in the split's stable row order; every batch has ``batch_size`` rows except
    possibly the last. Arguments are as for :func:`read_split`; they are checked at call time,
    not at the first ``next``.

    Yields:
        ``x`` float32 ``(B, *feature_shape)`` and ``y`` int64 ``(B,)``.
    """
    meta = load_meta(path)
    _check_args(split, shard_index, num_shards)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    chunks = _chunks(Path(path), meta, split, normalize, shard_index, num_shards, batch_size)
    return _as_tensors(_rebatch(chunks, batch_size), meta.feature_shape)


def _as_tensors(
    batches: Iterator[tuple[np.ndarray, np.ndarray]], feature_shape: tuple[int, ...]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in batches:
        yield torch.from_numpy(x.reshape(-1, *feature_shape)), torch.from_numpy(y)


def _check_args(split: str, shard_index: int, num_shards: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"shard_index={shard_index}, num_shards={num_shards}: need 0 <= shard_index < "
            "num_shards"
        )


def _chunks(
    root: Path,
    meta: DatasetMeta,
    split: str,
    normalize: bool,
    shard_index: int,
    num_shards: int,
    batch_size: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per record batch: this shard's rows as writable float32 ``(n, F)`` and int64 ``(n,)``.

    Arrow is asked for record batches of ``batch_size`` shard rows or about ``_SCAN_BYTES``,
    whichever is larger; a file's end cuts a record batch short.
    """
    files = split_files(root, split)
    if not files:
        if meta.row_counts[split]:
            raise DataError(
                f"split {split!r} has {meta.row_counts[split]} rows in meta.json but no Parquet "
                "parts",
                file=str(root),
                rows=meta.row_counts[split],
            )
        return
    if meta.is_image:
        scan_rows, column = max(batch_size * num_shards, 256), IMAGE_COLUMN
    else:
        scan_rows, column = (
            max(batch_size * num_shards, _SCAN_BYTES // (4 * meta.num_features)),
            X_COLUMN,
        )
    dataset = ds.dataset([str(f) for f in files], format="parquet")
    offset = 0  # position of the batch's first row in the split, for sharding
    for batch in dataset.to_batches(columns=[column, Y_COLUMN], batch_size=scan_rows):
        n = batch.num_rows
        first = (shard_index - offset) % num_shards
        offset += n
        if first >= n:
            continue
        values = batch.column(0)[first::num_shards]
        x = _decode_features(values, meta, len(values), normalize, str(root))
        y = batch.column(1).to_numpy()[first::num_shards]
        yield x, y.astype(np.int64, copy=True)


def _decode_features(values, meta: DatasetMeta, n: int, normalize: bool, where: str) -> np.ndarray:
    """Writable float32 ``(n, F)`` from an Arrow column of ``x`` lists or encoded images."""
    if meta.is_image:
        return _decode_images(values, meta, normalize, where)
    width = meta.num_features
    flat = values.flatten().to_numpy()
    if flat.size != n * width:
        raise DataError(
            f"x holds {flat.size // max(n, 1)} features per row, meta.json says {width}",
            file=where,
            column=X_COLUMN,
            rows=n,
        )
    x = flat.reshape(n, width)
    if not normalize:
        return x.copy()
    x = np.subtract(x, meta.mean)
    x *= (1.0 / meta.std).astype(np.float32)
    return x


def image_decoder(meta: DatasetMeta, normalize: bool = True, refuse_smaller: bool = False):
    """``decode(bytes) -> (C*S*S,)`` float32: an encoded image decoded with the deterministic
    transform of the test split (resize, centre crop, standardise unless ``normalize=False``).
    It raises :class:`~components.data.images.ImageDecodeError` for bytes that are no image and,
    with ``refuse_smaller``, ``ValueError`` for an image whose shorter side is under ``S`` (ingest
    refuses such images too: the model never saw one upsampled)."""
    from components.data.image_transforms import eval_transform
    from components.data.images import decode_rgb

    channels, size = meta.feature_shape[0], meta.feature_shape[-1]
    mean, std = (
        (meta.channel_mean, meta.channel_std) if normalize else ([0.0] * channels, [1.0] * channels)
    )
    transform = eval_transform(size, mean, std)

    def decode(data) -> np.ndarray:
        pixels = decode_rgb(data)
        height, width = pixels.shape[-2:]
        if refuse_smaller and min(height, width) < size:
            raise ValueError(
                f"{width}x{height} pixels, smaller than the model's {size}x{size} input"
            )
        return transform(pixels).reshape(-1).numpy()

    return decode


def _decode_images(values, meta: DatasetMeta, normalize: bool, where: str) -> np.ndarray:
    """Decode encoded images with the deterministic transform: ``(n, C*S*S)`` float32."""
    from components.data.images import ImageDecodeError

    decode = image_decoder(meta, normalize)
    out = np.empty((len(values), meta.num_features), np.float32)
    for i, data in enumerate(values):
        try:
            out[i] = decode(data.as_buffer())
        except ImageDecodeError as err:
            raise DataError(
                f"stored image cannot be decoded: {err}", file=where, column=IMAGE_COLUMN
            ) from err
    return out


def _first_rows(chunks, limit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The chunks cut off after ``limit`` rows in total (no later chunk is read)."""
    left = limit
    for x, y in chunks:
        if left <= 0:
            return
        yield x[:left], y[:left]
        left -= len(y)


def _rebatch(
    chunks: Iterator[tuple[np.ndarray, np.ndarray]], batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Regroup chunks of any size into batches of exactly ``batch_size`` (the last: fewer)."""
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    pending_rows = 0
    for x, y in chunks:
        while len(y):
            if not pending and len(y) >= batch_size:  # whole batch inside this chunk: no copy
                yield x[:batch_size], y[:batch_size]
                x, y = x[batch_size:], y[batch_size:]
                continue
            take = min(batch_size - pending_rows, len(y))
            pending.append((x[:take], y[:take]))
            pending_rows += take
            x, y = x[take:], y[take:]
            if pending_rows == batch_size:
                yield _concat(pending)
                pending, pending_rows = [], 0
    if pending:
        yield _concat(pending)


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
