"""Turn a user table (Parquet/CSV) into validated float32 features and integer labels.

Rows can be bad for three reasons (see :data:`DROP_REASONS`); they either raise
:class:`DataError` or, with ``drop_invalid``, are dropped and counted. Problems with whole
columns (missing, non-numeric) always raise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from components.data.errors import DataError
from components.data.labeled import LabeledArrays

# Order matters: a row bad for several reasons is counted under the first one only, so the
# per-reason counts add up to the number of dropped rows.
DROP_REASONS = ("ragged_features", "non_finite_features", "invalid_label")

_NAN_SPELLINGS = frozenset({"nan", "+nan", "-nan"})


def table_to_labeled(
    table: pa.Table,
    *,
    file: str,
    label_column: str,
    feature_columns: Sequence[str] | None,
    drop_invalid: bool,
) -> LabeledArrays:
    """Validate ``table`` and extract features and labels.

    Features come from one list-typed column (fixed-size, or variable-size with one common
    length) or from several scalar numeric columns. Labels must be integers; they are mapped
    to ``0..C-1`` in sorted order and the original values become the class names.

    Args:
        table: The file's contents.
        file: Path or URL of the file, for error messages.
        label_column: Column with the integer labels.
        feature_columns: Feature columns; ``None`` means all but the label.
        drop_invalid: Drop bad rows instead of raising.

    Raises:
        DataError: Naming the file, the column and the number of affected rows.
    """
    names = _feature_column_names(table, label_column, feature_columns, file)
    x, ragged = _features(table, names, file)
    labels, bad_label = parse_labels(table.column(label_column), label_column, file)
    non_finite = ~np.isfinite(x).all(axis=1) & ~ragged
    masks = {
        "ragged_features": ragged,
        "non_finite_features": non_finite,
        "invalid_label": bad_label,
    }
    if not drop_invalid:
        _raise_first_problem(masks, table, names, label_column, x, file)
    keep = np.ones(table.num_rows, dtype=bool)
    dropped: dict[str, int] = {}
    for reason, mask in masks.items():
        dropped[reason] = int((mask & keep).sum())
        keep &= ~mask
    if not keep.any():
        raise DataError("no valid rows left after dropping invalid ones", file=file, rows=0)
    classes, y = np.unique(labels[keep], return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            f"only one class ({classes[0]}) in the label column; classification needs at least 2",
            file=file,
            column=label_column,
            rows=int(keep.sum()),
        )
    return LabeledArrays(
        x=np.ascontiguousarray(x[keep]),
        y=y.astype(np.int64),
        class_names=tuple(str(c) for c in classes),
        feature_shape=(x.shape[1],),
        dropped_by_reason=dropped,
    )


def _feature_column_names(
    table: pa.Table, label_column: str, feature_columns: Sequence[str] | None, file: str
) -> list[str]:
    columns = table.column_names
    if label_column not in columns:
        raise DataError(
            f"label column not found; the file has columns {columns}",
            file=file,
            column=label_column,
            rows=table.num_rows,
        )
    if feature_columns is None:
        names = [c for c in columns if c != label_column]
    else:
        names = list(feature_columns)
    missing = [c for c in names if c not in columns]
    if missing:
        raise DataError(
            f"feature column(s) {missing} not found; the file has columns {columns}",
            file=file,
            column=missing[0],
            rows=table.num_rows,
        )
    if not names:
        raise DataError("no feature columns besides the label", file=file, column=label_column)
    if label_column in names:
        raise DataError("the label column is also a feature column", file=file, column=label_column)
    lists = [c for c in names if _is_list(table.schema.field(c).type)]
    if lists and len(names) > 1:
        raise DataError(
            f"list column {lists[0]!r} is mixed with other feature columns; use one list column "
            "or only scalar columns",
            file=file,
            column=lists[0],
        )
    return names


def _features(table: pa.Table, names: list[str], file: str) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(N, F)`` float32 (NaN where missing) and the mask of ragged rows."""
    if len(names) == 1 and _is_list(table.schema.field(names[0]).type):
        return _list_features(table.column(names[0]), names[0], file)
    x = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        x[:, j] = _numeric(table.column(name), name, file, what="feature column")
    return x, np.zeros(table.num_rows, dtype=bool)


def _list_features(column: pa.ChunkedArray, name: str, file: str) -> tuple[np.ndarray, np.ndarray]:
    array = column.combine_chunks()
    value_type = array.type.value_type
    if not _is_numeric(value_type):
        raise DataError(
            f"feature lists hold {value_type}, not numbers",
            file=file,
            column=name,
            rows=len(array) - array.null_count,
        )
    present = array.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(array).fill_null(-1).to_numpy(zero_copy_only=False)
    if not present.any():
        raise DataError("every feature list is missing", file=file, column=name, rows=len(array))
    # The common length is the most frequent one; rows of any other length are ragged.
    values, counts = np.unique(lengths[present], return_counts=True)
    width = int(values[np.argmax(counts)])
    if width == 0:
        raise DataError("feature lists are empty", file=file, column=name, rows=len(array))
    ragged = present & (lengths != width)
    good = present & ~ragged
    x = np.full((len(array), width), np.nan, dtype=np.float32)
    flat = array.filter(pa.array(good)).flatten()
    x[good] = _numeric(flat, name, file, what="feature list").reshape(-1, width)
    return x, ragged


def _numeric(array: pa.Array | pa.ChunkedArray, name: str, file: str, *, what: str) -> np.ndarray:
    """Values as float32 with NaN for nulls; strings are parsed, anything else raises."""
    if _is_text(array.type):
        return _parse_numbers(array, name, file, what).astype(np.float32)
    if not _is_numeric(array.type):
        raise DataError(
            f"{what} is not numeric (type {array.type})",
            file=file,
            column=name,
            rows=len(array) - array.null_count,
        )
    values = pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, caught as non-finite
        return values.astype(np.float32)


def _parse_numbers(
    array: pa.Array | pa.ChunkedArray, name: str, file: str, what: str
) -> np.ndarray:
    text = pd.Series(array.to_numpy(zero_copy_only=False), dtype=object)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    spelled_nan = text.str.strip().str.lower().isin(_NAN_SPELLINGS).to_numpy()
    unparsable = np.isnan(numbers) & text.notna().to_numpy() & ~spelled_nan
    if unparsable.any():
        examples = text[unparsable].head(3).tolist()
        raise DataError(
            f"{what} is not numeric (type {array.type}): values such as {examples} are not numbers",
            file=file,
            column=name,
            rows=int(unparsable.sum()),
        )
    return numbers


def parse_labels(column: pa.ChunkedArray, name: str, file: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 (0 where bad) and the mask of rows whose label is not an integer.

    Integer and boolean columns are taken as they are (nulls are bad); floats and numeric
    strings count when they hold whole numbers.

    Raises:
        DataError: The column's type cannot hold integer labels at all.
    """
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        bad = column.is_null().to_numpy(zero_copy_only=False)
        labels = pc.cast(column.fill_null(0), pa.int64()).to_numpy(zero_copy_only=False)
        return labels, bad
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    elif _is_text(kind):
        text = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    else:
        raise DataError(
            f"labels must be integers, but the column has type {kind}",
            file=file,
            column=name,
            rows=len(column),
        )
    bad = ~np.isfinite(values)
    bad[~bad] = values[~bad] != np.round(values[~bad])
    return np.where(bad, 0, values).astype(np.int64), bad


def _raise_first_problem(
    masks: dict[str, np.ndarray],
    table: pa.Table,
    feature_names: list[str],
    label_column: str,
    x: np.ndarray,
    file: str,
) -> None:
    total = table.num_rows
    hint = "; set drop_invalid=True to drop such rows"
    ragged, non_finite, bad_label = (masks[r] for r in DROP_REASONS)
    if ragged.any():
        lengths = sorted(
            {len(v) for v in table.column(feature_names[0]).filter(pa.array(ragged)).to_pylist()}
        )
        raise DataError(
            f"feature lists have ragged lengths {lengths[:5]} (of {total} rows){hint}",
            file=file,
            column=feature_names[0],
            rows=int(ragged.sum()),
        )
    if non_finite.any():
        raise DataError(
            f"features are NaN, inf or missing (of {total} rows){_per_column(x, feature_names)}"
            f"{hint}",
            file=file,
            column=_first_non_finite_column(x, feature_names),
            rows=int(non_finite.sum()),
        )
    if bad_label.any():
        examples = table.column(label_column).filter(pa.array(bad_label)).slice(0, 3).to_pylist()
        raise DataError(
            f"labels must be integers; {int(bad_label.sum())} of {total} rows are not "
            f"(e.g. {examples}){hint}",
            file=file,
            column=label_column,
            rows=int(bad_label.sum()),
        )


def _per_column(x: np.ndarray, names: list[str]) -> str:
    if len(names) == 1:
        return ""
    counts = (~np.isfinite(x)).sum(axis=0)
    listed = ", ".join(f"{n!r}: {int(c)}" for n, c in zip(names, counts, strict=True) if c)
    return f"; rows per column: {listed}"


def _first_non_finite_column(x: np.ndarray, names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return names[int(np.argmax((~np.isfinite(x)).any(axis=0)))]


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_numeric(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    )
