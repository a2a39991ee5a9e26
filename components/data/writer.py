"""Write a dataset folder: Parquet parts per split and ``meta.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.data.layout import (
    MASK_COLUMN,
    META_FILE,
    SPLITS,
    X_COLUMN,
    Y_COLUMN,
    part_name,
    split_dir,
)
from components.data.spec import DataSpec
from components.data.stats import Moments
from components.redact import redact


def to_arrow(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> pa.Table:
    """Rows as a table: ``x`` fixed_size_list<float32> (flattened features), ``y`` int64.

    An optional ``mask`` (one uint8 array per row, e.g. an ``(H, W)`` label map) becomes a
    flattened ``fixed_size_list<uint8>`` column.
    """
    columns = {
        X_COLUMN: _fixed_size_lists(x, np.float32),
        Y_COLUMN: pa.array(np.asarray(y, dtype=np.int64)),
    }
    if mask is not None:
        columns[MASK_COLUMN] = _fixed_size_lists(mask, np.uint8)
    return pa.table(columns)


def _fixed_size_lists(rows: np.ndarray, dtype: type) -> pa.FixedSizeListArray:
    flat = np.ascontiguousarray(rows, dtype=dtype).reshape(len(rows), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def write_part(
    root: Path,
    split: str,
    index: int,
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None = None,
) -> None:
    """Write one Parquet part of ``split``, with an optional ``mask`` column; 0 rows: nothing."""
    if len(y) == 0:
        return
    folder = split_dir(root, split)
    folder.mkdir(parents=True, exist_ok=True)
    # Dictionary-encoding float features only wastes time before Arrow falls back to plain.
    pq.write_table(to_arrow(x, y, mask), folder / part_name(index), use_dictionary=[Y_COLUMN])


def write_split(
    root: Path,
    split: str,
    x: np.ndarray,
    y: np.ndarray,
    rows_per_file: int,
    mask: np.ndarray | None = None,
) -> None:
    """Write a whole in-memory split as parts of at most ``rows_per_file`` rows."""
    for index, start in enumerate(range(0, len(y), rows_per_file)):
        stop = start + rows_per_file
        rows_mask = None if mask is None else mask[start:stop]
        write_part(root, split, index, x[start:stop], y[start:stop], rows_mask)


def build_meta(
    *,
    spec: DataSpec,
    fingerprint: str,
    feature_shape: tuple[int, ...],
    class_names: tuple[str, ...],
    train_moments: Moments,
    row_counts: dict[str, int],
    dropped_by_reason: dict[str, int],
    feature_names: tuple[str, ...] | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    index_columns: Sequence[str] = (),
    filled_missing: Mapping[str, int] | None = None,
) -> dict:
    """The ``meta.json`` contents (see the dataset contract in DESIGN.md); ``feature_names``
    (a table's column names, one per feature), ``categories`` (each categorical column's
    words, whose 0/1 features are named ``column=word``), ``index_columns`` (left out as a
    saved row index) and ``filled_missing`` (missing values filled, per column) only when
    given."""
    meta = {
        "feature_shape": list(feature_shape),
        "dtype": "float32",
        "num_features": math.prod(feature_shape),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "normalization": {
            "mean": train_moments.mean.tolist(),
            "std": train_moments.std().tolist(),
        },
        "row_counts": {split: int(row_counts.get(split, 0)) for split in SPLITS},
        "fingerprint": fingerprint,
        "source": redact(spec.to_dict()),  # a URL's credentials stay out of the cache
        "dropped_rows": sum(dropped_by_reason.values()),
        "dropped_by_reason": dict(dropped_by_reason),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if feature_names is not None:
        meta["feature_names"] = list(feature_names)
    if categories:
        meta["categories"] = {column: list(words) for column, words in categories.items()}
    if index_columns:
        meta["index_columns"] = list(index_columns)
    if filled_missing:
        meta["filled_missing"] = dict(filled_missing)
    return meta


def write_meta(root: Path, meta: dict) -> None:
    """Write ``meta.json`` into the dataset folder ``root``."""
    (root / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
