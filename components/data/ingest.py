"""The ingest stage: source -> validated, split, normalisation-ready dataset folder (cached)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components import atomic
from components.data.embedded import load_embedded
from components.data.errors import DataError, StorageError
from components.data.file_source import load_file, open_checked, parquet_files
from components.data.fingerprint import fingerprint as compute_fingerprint
from components.data.image_folder import check_folder, folder_rows, scan_folder
from components.data.image_ingest import ImageRows, write_image_dataset
from components.data.image_table import find_image_column, table_rows
from components.data.labeled import LabeledArrays
from components.data.layout import SPLITS
from components.data.manifest import FILES_KEY, file_manifest, read_meta
from components.data.parts import write_parts
from components.data.reader import read_labels
from components.data.spec import EMBEDDED_SOURCES, DataSpec, resolve_feature_shape
from components.data.splits import fixed_splits, planned_split
from components.data.stats import Moments
from components.data.synthetic import write_synthetic
from components.data.validation import DROP_REASONS
from components.data.writer import build_meta, write_meta, write_split

Progress = Callable[[str], None]


@dataclass
class IngestResult:
    """Where the dataset is and what it holds.

    Attributes:
        path: The dataset folder ``<cache_dir>/<source>-<fingerprint[:16]>``.
        meta: The contents of its ``meta.json``.
        cache_hit: ``True`` if an identical dataset was already cached and nothing was written.
    """

    path: Path
    meta: dict
    cache_hit: bool


def ingest(
    spec: DataSpec, cache_dir: str | Path, *, progress: Progress | None = None
) -> IngestResult:
    """Build the dataset described by ``spec`` in ``cache_dir``, or reuse a cached one.

    The folder is written under a temporary name inside ``cache_dir`` and renamed into place
    only when complete, so a failure leaves neither a partial dataset nor a temporary folder,
    and never touches an existing cached dataset; the temporary folders a killed ingest left
    are deleted by the next (:func:`components.atomic.remove_abandoned`). A cached dataset is
    used only when its parts still match the sizes and row counts recorded in its
    ``meta.json``; a damaged one (a part deleted or truncated, ``meta.json`` mangled) is
    reported through ``progress`` and ingested again.

    Args:
        spec: The source and how to split it.
        cache_dir: Folder holding cached datasets (created if missing).
        progress: Optional callback receiving short human-readable status messages.

    Returns:
        The dataset folder, its meta and whether it came from the cache.

    Raises:
        DataError: The source data is missing or invalid (the message says where and how much).
        StorageError: ``cache_dir`` cannot be written (read-only, full, not a folder).
        ValueError: The spec is inconsistent.
    """
    say = progress or (lambda _message: None)
    cache_dir = Path(cache_dir)
    say(f"fingerprinting {spec.source}" + (f" ({spec.path})" if spec.path else ""))
    fingerprint = compute_fingerprint(spec)
    final = cache_dir / f"{spec.source}-{fingerprint[:16]}"
    cached, problem = _cached(final, fingerprint)
    if cached is not None:
        say(f"cache hit: {final}")
        return IngestResult(final, cached, cache_hit=True)
    if problem is not None:
        say(f"cached dataset {final} is damaged ({problem}); ingesting it again")
    staging = None
    try:
        if removed := atomic.remove_abandoned(cache_dir):
            say(f"deleted {removed} unfinished dataset folder(s) that stopped ingests left")
        staging = atomic.building_dir(cache_dir)
        meta = _build(spec, staging, fingerprint, say)
        _publish(staging, final, fingerprint)
    except OSError as err:  # sources report their own read errors as DataError
        raise StorageError(str(cache_dir), "the dataset cache (run.cache_dir)", err) from err
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    say(f"wrote {final}: {meta['row_counts']}")
    return IngestResult(final, meta, cache_hit=False)


def check_source(spec: DataSpec) -> None:
    """The first of :func:`ingest`'s checks, without reading any data: the file, folder or
    pattern ``spec.path`` names is there (a command refuses a mistyped ``data.path`` before it
    starts anything).

    Raises:
        DataError: As ingest would: the path is missing, or not the kind the source reads.
    """
    if spec.path is None:
        return
    if spec.source == "image_folder":
        check_folder(spec.path)
    elif spec.source == "parquet":
        parquet_files(spec.path)
    elif spec.source == "csv":
        open_checked(spec.path)


def _build(spec: DataSpec, root: Path, fingerprint: str, say: Progress) -> dict:
    """Write the dataset into ``root`` and return its meta."""
    if spec.source == "synthetic":
        feature_shape = resolve_feature_shape(spec.feature_shape, (spec.num_features,))
        summary = write_synthetic(spec, root, say)
        meta = build_meta(
            spec=spec,
            fingerprint=fingerprint,
            feature_shape=feature_shape,
            class_names=tuple(str(k) for k in range(spec.num_classes)),
            train_moments=summary.train,
            row_counts=summary.row_counts,
            dropped_by_reason=dict.fromkeys(DROP_REASONS, 0),
        )
    elif spec.source == "parts":
        say(f"generating {spec.num_samples} parts images")
        meta = write_parts(spec, root, fingerprint)
    elif (images := _image_rows(spec, say)) is not None:
        _say_fixed_splits(say, images.splits)
        meta = write_image_dataset(spec, images, root, fingerprint, say)
    else:
        say(f"reading {spec.source}")
        data = load_embedded(spec.source) if spec.source in EMBEDDED_SOURCES else load_file(spec)
        _say_fixed_splits(say, data.splits)
        meta = _write_in_memory(spec, data, root, fingerprint)
    meta["class_counts"] = _class_counts(root, int(meta["num_classes"]))
    meta[FILES_KEY] = file_manifest(root)
    write_meta(root, meta)
    return meta


def _class_counts(root: Path, num_classes: int) -> dict[str, list[int]]:
    """Rows of each class in each split, read back from the written labels."""
    return {
        split: np.bincount(read_labels(root, split), minlength=num_classes).tolist()
        for split in SPLITS
    }


def _say_fixed_splits(say: Progress, splits) -> None:
    """Log the splits the source fixes (split folders, split file names), if any."""
    if splits is not None:
        counts = Counter(splits)
        fixed = ", ".join(f"{split} {counts[split]}" for split in SPLITS if split in counts)
        say(
            f"splits fixed by the source's folder or file names (rows): {fixed}; a split it "
            "does not name is carved out of train"
        )


def _image_rows(spec: DataSpec, say: Progress) -> ImageRows | None:
    """The candidate rows of an image folder or an image Parquet file; ``None`` otherwise."""
    if spec.source == "image_folder":
        assert spec.path is not None
        say(f"scanning {spec.path}")
        return folder_rows(scan_folder(spec.path))
    column = find_image_column(spec)
    if column is None:
        return None
    say(f"reading image column {column!r} of {spec.path}")
    return table_rows(spec, column)


def _write_in_memory(spec: DataSpec, data: LabeledArrays, root: Path, fingerprint: str) -> dict:
    feature_shape = resolve_feature_shape(spec.feature_shape, data.feature_shape, file=spec.path)
    rows = planned_split(
        spec,
        data.y,
        data.splits,
        class_names=data.class_names,
        file=spec.path,
        column=spec.label_column if spec.path else None,
    )
    x = _filled(data, rows["train"], spec.path) if data.missing else data.x
    for split, idx in rows.items():
        write_split(root, split, x[idx], data.y[idx], spec.partition_rows)
    meta = build_meta(
        spec=spec,
        fingerprint=fingerprint,
        feature_shape=feature_shape,
        class_names=data.class_names,
        train_moments=Moments.of_rows(x[rows["train"]]),
        row_counts={split: len(idx) for split, idx in rows.items()},
        dropped_by_reason={**dict.fromkeys(DROP_REASONS, 0), **data.dropped_by_reason},
        # names of flat features only: a reshaped row (signals, images) has positions instead
        feature_names=data.feature_names if len(feature_shape) == 1 else None,
        categories=data.categories,
        index_columns=data.index_columns,
        filled_missing=data.missing,
    )
    if data.splits is not None:  # the report says where the splits came from
        meta.update(layout="parquet_split_files", fixed_splits=fixed_splits(data.splits))
    return meta


def _filled(data: LabeledArrays, train: np.ndarray, file: str | None) -> np.ndarray:
    """``data.x`` with every missing (NaN) value replaced by its feature's mean over the
    ``train`` rows, so no statistic of the val and test rows leaks into their inputs.

    Raises:
        DataError: A feature with missing values has none in the training split.
    """
    holes = np.isnan(data.x)
    empty = holes.any(axis=0) & holes[train].all(axis=0)
    if empty.any():
        names = data.feature_names or [f"x[{j}]" for j in range(data.x.shape[1])]
        raise DataError(
            "feature column has missing values and no value in the training split to fill "
            "them from; leave it out with data.drop_columns",
            file=file,
            column=names[int(np.argmax(empty))],
        )
    return np.where(holes, np.nanmean(data.x[train], axis=0), data.x).astype(np.float32)


def _cached(folder: Path, fingerprint: str) -> tuple[dict | None, str | None]:
    """``(meta, None)`` for a complete cached dataset with this fingerprint; else ``None`` and
    why the folder cannot be used (``None`` too when there is no folder: a plain miss)."""
    if not folder.exists():
        return None, None
    meta, problem = read_meta(folder)
    if meta is not None and meta.get("fingerprint") != fingerprint:
        return None, "its meta.json names another fingerprint"
    return meta, problem


def _publish(staging: Path, final: Path, fingerprint: str) -> None:
    """Rename the finished ``staging`` folder to ``final`` atomically.

    If another ingest published the same dataset meanwhile, its copy wins and ours is dropped;
    a leftover folder that is not a complete dataset (a crash, a damaged cache) is replaced.
    """
    try:
        os.replace(staging, final)
        return
    except OSError:
        if _cached(final, fingerprint)[0] is not None:
            return
    shutil.rmtree(final)
    os.replace(staging, final)
