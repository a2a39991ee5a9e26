"""In-memory features and labels of a source, validated and ready to split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LabeledArrays:
    """A whole source held in memory (embedded datasets and user files).

    Attributes:
        x: Raw features, float32, shape ``(N, F)`` (flattened).
        y: Class indices ``0..C-1``, int64, shape ``(N,)``.
        class_names: Name of each class index.
        feature_shape: Natural shape of one sample; its product is ``F``.
        dropped_by_reason: Rows removed by validation, per reason.
        splits: Per row, the split its source fixes (Parquet files named for their split),
            or ``None``: a seeded stratified split.
        feature_names: Name of each flattened feature (a table's column names), or ``None``.
        categories: Each categorical column's words, in the order of its 0/1 features
            (``column=word``); empty when no column is categorical.
        index_columns: Columns left out of the features as a saved row index (pandas' index
            in a CSV or Parquet file).
        missing: With ``fill_missing``: how many values of each column are missing (NaN in
            ``x``; a word column's row without a word has all its 0/1 features 0).
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    feature_shape: tuple[int, ...]
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    splits: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    index_columns: tuple[str, ...] = ()
    missing: dict[str, int] = field(default_factory=dict)
