"""Turn a user table (Parquet/CSV) into validated float32 features and integer labels.

Rows can be bad for three reasons (see :data:`DROP_REASONS`); they either raise
:class:`DataError` or, with ``drop_invalid``, are dropped and counted. Problems with whole
columns (missing, non-numeric) always raise. A table may arrive in batches (a CSV file is
streamed block by block); every check covers the whole table, and errors name the first bad
rows as the file counts them (:class:`RowNumbering`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from components.data.errors import ROW_INDICES, DataError, RowNumbering
from components.data.labeled import LabeledArrays
from components.data.spec import MAX_CATEGORIES

# Order matters: a row bad for several reasons is counted under the first one only, so the
# per-reason counts add up to the number of dropped rows.
DROP_REASONS = ("ragged_features", "non_finite_features", "invalid_label")

# A date (year first or last, 4 digits), with or without a time of day, or a time alone.
_DATE_OR_TIME = re.compile(
    r"(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?|\d{1,2}:\d{2}(:\d{2})?"
)

# A saved row index, not data: pandas writes its index into a CSV file under an empty header
# ("Unnamed: 0" once such a file is read and saved again), and into Parquet as the columns its
# schema's pandas metadata lists (``__index_level_0__``, or the index's own name).
_UNNAMED = re.compile(r"(Unnamed: \d+)?")

# Column names that usually hold the classes, for the hint when the label column is not found.
_LABEL_NAMES = ("label", "labels", "class", "target", "y", "category", "outcome", "species")

_NAN_SPELLINGS = frozenset({"nan", "+nan", "-nan"})
_EXAMPLES = 3
Batch = pa.Table | pa.RecordBatch


@dataclass
class _Unparsable:
    """Text values of one feature column that are not numbers, and the categories they name
    (their first ``limit + 1`` distinct values are counted: enough to tell too many)."""

    positions: list[np.ndarray] = field(default_factory=list)
    examples: list = field(default_factory=list)
    kind: pa.DataType | None = None
    categories: dict[str, int] = field(default_factory=dict)  # in order of first sight
    codes: list[np.ndarray] = field(default_factory=list)  # per position, into categories

    def add(self, text: pa.Array, start: int, bad: np.ndarray, limit: int) -> None:
        """Record the values of ``text`` (a batch's column from row ``start``) where ``bad``."""
        self.positions.append(start + np.flatnonzero(bad))
        words = pc.utf8_trim_whitespace(text.filter(pa.array(bad)))
        if len(self.examples) < _EXAMPLES:
            self.examples += words.slice(0, _EXAMPLES - len(self.examples)).to_pylist()
        if len(self.categories) > limit:
            return  # too many to encode: the column is refused whatever the rest holds
        encoded = pc.dictionary_encode(words)
        ids = [
            self.categories.setdefault(w, len(self.categories))
            for w in encoded.dictionary.to_pylist()
        ]
        self.codes.append(
            np.asarray(ids, dtype=np.int64)[encoded.indices.to_numpy(zero_copy_only=False)]
        )


@dataclass
class _Checked:
    """The arrays of a whole table and what is wrong with its rows."""

    names: list[str]
    x: np.ndarray
    labels: np.ndarray
    masks: dict[str, np.ndarray]
    unparsable: dict[str, _Unparsable]
    ragged_lengths: list[int]
    label_examples: list
    label_names: tuple[str, ...] | None = None  # a column of class names: labels index these
    categories: dict[str, list[str]] = field(default_factory=dict)  # column -> its words
    index_columns: list[str] = field(default_factory=list)  # a saved row index, left out
    labels_missing: bool = False  # every bad label is an empty cell or null


def table_to_labeled(
    table: pa.Table,
    *,
    file: str,
    label_column: str,
    feature_columns: Sequence[str] | None,
    drop_invalid: bool,
    numbering: RowNumbering = ROW_INDICES,
    splits: np.ndarray | None = None,
    max_categories: int = MAX_CATEGORIES,
    drop_columns: Sequence[str] = (),
    fill_missing: bool = False,
) -> LabeledArrays:
    """Validate ``table`` and extract features and labels.

    Features come from one list-typed column (fixed-size, or variable-size with one common
    length) or from several scalar numeric columns. Labels are integers, or class names: a text
    column none of whose values is a number (``cat``, ``dog``); either way they are mapped to
    ``0..C-1`` in sorted order and the original values become the class names. A column that
    mixes numbers and other text is refused (``"labels must be integers"``): a stray word among
    class indices is more likely a mistake than a class.

    Args:
        table: The file's contents.
        file: Path or URL of the file, for error messages.
        label_column: Column with the integer labels.
        feature_columns: Feature columns; ``None`` means all but the label.
        drop_columns: Columns left out of the features (with ``feature_columns=None``).
        drop_invalid: Drop bad rows instead of raising.
        numbering: How error messages name rows (row indices, or CSV line numbers).
        splits: Per row, the split its source fixes (kept for the rows kept), or ``None``.
        max_categories: The most distinct words a categorical feature column may hold.
        fill_missing: Keep rows with missing feature values (empty, null, NaN) rather than
            treat them as bad; the values stay NaN (a word column's row gets no word) for
            the ingest to fill with the training split's mean, and are counted per column.

    Raises:
        DataError: Naming the file, the column, the number of affected rows and the first few.
    """
    return batches_to_labeled(
        [table],
        file=file,
        label_column=label_column,
        feature_columns=feature_columns,
        drop_columns=drop_columns,
        fill_missing=fill_missing,
        drop_invalid=drop_invalid,
        numbering=numbering,
        splits=splits,
        max_categories=max_categories,
    )


def batches_to_labeled(
    batches: Iterable[Batch],
    *,
    file: str,
    label_column: str,
    feature_columns: Sequence[str] | None,
    drop_invalid: bool,
    numbering: RowNumbering = ROW_INDICES,
    splits: np.ndarray | None = None,
    max_categories: int = MAX_CATEGORIES,
    drop_columns: Sequence[str] = (),
    fill_missing: bool = False,
) -> LabeledArrays:
    """:func:`table_to_labeled` for a table that arrives as consecutive batches of rows.

    Only the features and labels of all batches are held at once, never the batches
    themselves. List features must come in one batch (their common length is the table's).

    Raises:
        DataError: As :func:`table_to_labeled`; ``"file has no rows"`` when no batch has one.
    """
    columns = (feature_columns, tuple(drop_columns))
    checked = _check_batches(batches, file, label_column, columns, max_categories)
    _encode_categories(checked, file, max_categories)
    _raise_unparsable(checked, file, numbering)
    masks = checked.masks
    if fill_missing:  # only inf is bad now
        masks["non_finite_features"] = np.isinf(checked.x).any(axis=1) & ~masks["ragged_features"]
    if not drop_invalid:
        _raise_first_problem(checked, label_column, file, numbering)
    keep = np.ones(len(checked.labels), dtype=bool)
    dropped: dict[str, int] = {}
    for reason, mask in masks.items():
        dropped[reason] = int((mask & keep).sum())
        keep &= ~mask
    if not keep.any():
        raise DataError("no valid rows left after dropping invalid ones", file=file, rows=0)
    classes, y = np.unique(checked.labels[keep], return_inverse=True)
    named = checked.label_names
    class_names = tuple(named[c] if named else str(c) for c in classes)
    if len(classes) < 2:
        raise DataError(
            f"only one class ({class_names[0]}) in the label column; classification needs at "
            "least 2",
            file=file,
            column=label_column,
            rows=int(keep.sum()),
        )
    x = checked.x if keep.all() else checked.x[keep]  # no copy of a clean table's features
    missing = _missing_per_column(x, checked.names) if fill_missing else {}
    x, names = _one_hot(x, checked.names, checked.categories)
    return LabeledArrays(
        x=np.ascontiguousarray(x),
        y=y.astype(np.int64),
        class_names=class_names,
        feature_shape=(x.shape[1],),
        dropped_by_reason=dropped,
        splits=None if splits is None else np.asarray(splits)[keep],
        feature_names=names,
        categories={column: tuple(words) for column, words in checked.categories.items()},
        index_columns=tuple(checked.index_columns),
        missing=missing,
    )


def _missing_per_column(x: np.ndarray, columns: list[str]) -> dict[str, int]:
    """How many values of each column are missing (NaN), for the columns missing any."""
    counts = np.isnan(x).sum(axis=0)
    if len(columns) != x.shape[1]:  # one list column
        return {columns[0]: int(counts.sum())} if counts.any() else {}
    return {column: int(n) for column, n in zip(columns, counts, strict=True) if n}


def _one_hot(
    x: np.ndarray, columns: list[str], categories: dict[str, list[str]]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``x`` with each categorical column's codes spread into one 0/1 feature per category
    (``column=category``, in the column's place), and every feature's name: its column's, or
    ``column[i]`` for the elements of a list column."""
    if len(columns) != x.shape[1]:
        return x, tuple(f"{columns[0]}[{i}]" for i in range(x.shape[1]))
    if not categories:
        return x, tuple(columns)
    blocks, names = [], []
    for j, column in enumerate(columns):
        words = categories.get(column)
        if words is None:
            blocks.append(x[:, j : j + 1])
            names.append(column)
            continue
        blocks.append((x[:, j : j + 1] == np.arange(len(words))).astype(np.float32))
        names += [f"{column}={word}" for word in words]
    return np.concatenate(blocks, axis=1), tuple(names)


def _encode_categories(checked: _Checked, file: str, limit: int) -> None:
    """Turn each feature column of words (text none of whose values is a number, e.g. ``red``,
    ``blue``) into its categories' codes, the categories sorted; a row without a word (empty,
    null) stays NaN, a missing value. A column that mixes words and numbers stays unparsable.

    Raises:
        DataError: A column of words holds more than ``limit`` distinct ones.
    """
    for j, name in enumerate(checked.names):
        found = checked.unparsable.get(name)
        if found is None or np.isfinite(checked.x[:, j]).any() or _numbers_with_commas(found):
            continue
        if all(_DATE_OR_TIME.fullmatch(word) for word in found.categories):
            raise DataError(_dates(f"e.g. {found.examples}"), file=file, column=name)
        if len(found.categories) > limit:
            raise DataError(
                f"feature column holds more than {limit} distinct words (e.g. "
                f"{found.examples}), too many to encode as categories: leave it out with "
                "data.drop_columns, or raise data.max_categories",
                file=file,
                column=name,
            )
        words = sorted(found.categories)
        rank = np.empty(len(words), dtype=np.int64)
        rank[[found.categories[word] for word in words]] = np.arange(len(words))
        checked.x[np.concatenate(found.positions), j] = rank[np.concatenate(found.codes)]
        checked.categories[name] = words
        del checked.unparsable[name]
    if checked.categories:
        finite = np.isfinite(checked.x).all(axis=1)
        checked.masks["non_finite_features"] = ~finite & ~checked.masks["ragged_features"]


def _check_batches(
    batches: Iterable[Batch],
    file: str,
    label_column: str,
    columns: tuple[Sequence[str] | None, Sequence[str]],
    max_categories: int,
) -> _Checked:
    """Extract and check every batch, then join them into one :class:`_Checked`."""
    names: list[str] | None = None
    index: list[str] = []
    xs, labels, ragged_lengths, label_examples, raw_labels = [], [], set(), [], []
    masks: dict[str, list[np.ndarray]] = {reason: [] for reason in DROP_REASONS}
    unparsable: dict[str, _Unparsable] = {}
    start = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if names is None:
            feature_columns, drop_columns = columns
            if feature_columns is None:  # every column but the label: an index is left out
                index = _index_columns(batch, label_column)
            drop = (*drop_columns, *index)
            names = _feature_column_names(batch, label_column, feature_columns, drop, file)
        x, ragged = _features(batch, names, file, start, unparsable, max_categories)
        batch_labels, bad_label = parse_labels(batch.column(label_column), label_column, file)
        masks["ragged_features"].append(ragged)
        masks["non_finite_features"].append(~np.isfinite(x).all(axis=1) & ~ragged)
        masks["invalid_label"].append(bad_label)
        if ragged.any():
            kept = batch.column(names[0]).filter(pa.array(ragged))
            ragged_lengths.update(pc.list_value_length(kept).to_pylist())
        if bad_label.any() and len(label_examples) < _EXAMPLES:
            bad = batch.column(label_column).filter(pa.array(bad_label))
            label_examples += bad.slice(0, _EXAMPLES - len(label_examples)).to_pylist()
        xs.append(x)
        labels.append(batch_labels)
        raw_labels.append(batch.column(label_column))
        start += batch.num_rows
    if names is None:
        raise DataError("file has no rows", file=file, rows=0)
    checked = _Checked(
        names=names,
        x=xs[0] if len(xs) == 1 else np.concatenate(xs),
        labels=np.concatenate(labels),
        masks={reason: np.concatenate(parts) for reason, parts in masks.items()},
        unparsable=unparsable,
        ragged_lengths=sorted(ragged_lengths),
        label_examples=label_examples,
        index_columns=index,
    )
    if not checked.masks["invalid_label"].any():
        return checked
    # decided on the whole column, and only where some labels are no integers
    column = pa.chunked_array(raw_labels)
    named = class_name_labels(column)
    if named is not None:
        checked.labels, checked.masks["invalid_label"], checked.label_names = named
    # bad for being empty alone: the error says so rather than "not integers"
    checked.labels_missing = bool((checked.masks["invalid_label"] <= _no_label(column)).all())
    return checked


def _no_label(column: pa.ChunkedArray) -> np.ndarray:
    """Where a label cell is empty: null, or text of only spaces."""
    empty = column.is_null()
    if _is_text(column.type):
        empty = pc.or_(empty, pc.equal(pc.utf8_trim_whitespace(column), ""))
    return empty.fill_null(True).to_numpy(zero_copy_only=False)


def _likely_label(asked: str, columns: list[str]) -> str:
    """The column most likely meant as the labels: one named like ``asked`` or like a class
    column (``Label``, ``target``, ``class``, ``species`` ...), else the last one."""
    lower = {c.lower().strip(): c for c in columns}
    for name in (asked.lower(), *_LABEL_NAMES):
        if name in lower:
            return lower[name]
    close = difflib.get_close_matches(asked.lower(), list(lower), n=1, cutoff=0.75)
    return lower[close[0]] if close else columns[-1]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_override(column: str) -> str:
    """``data.label_column=<column>`` as typed in a shell (quoted when it has to be)."""
    if re.fullmatch(r"[A-Za-z0-9_.-]+", column):
        return f"data.label_column={column}"
    return "\"data.label_column='" + column.replace("'", "\\'") + "'\""


def _feature_column_names(
    table: Batch,
    label_column: str,
    feature_columns: Sequence[str] | None,
    drop_columns: Sequence[str],
    file: str,
) -> list[str]:
    columns = table.schema.names
    if label_column not in columns:
        likely = _label_override(_likely_label(label_column, columns))
        hint = f"name the class column with data.label_column, e.g. {likely}"
        if sum(_is_number(c) for c in columns) > len(columns) / 2:
            hint = "its first line is data, not a header: add a first line naming the columns"
        raise DataError(
            f"label column not found; the file has columns {columns}; {hint}",
            file=file,
            column=label_column,
        )
    absent = [c for c in drop_columns if c not in columns]
    if absent:
        raise DataError(
            f"data.drop_columns names {absent}, which the file does not have; it has columns "
            f"{columns}",
            file=file,
            column=absent[0],
        )
    if feature_columns is None:
        names = [c for c in columns if c != label_column and c not in drop_columns]
    else:
        names = list(feature_columns)
    missing = [c for c in names if c not in columns]
    if missing:
        raise DataError(
            f"feature column(s) {missing} not found; the file has columns {columns}",
            file=file,
            column=missing[0],
        )
    if not names:
        raise DataError("no feature columns besides the label", file=file, column=label_column)
    if label_column in names:
        raise DataError("the label column is also a feature column", file=file, column=label_column)
    lists = [c for c in names if is_list_type(table.schema.field(c).type)]
    if lists and len(names) > 1:
        raise DataError(
            f"list column {lists[0]!r} is mixed with other feature columns; use one list column "
            "or only scalar columns",
            file=file,
            column=lists[0],
        )
    return names


def _features(
    table: Batch,
    names: list[str],
    file: str,
    start: int,
    unparsable: dict[str, _Unparsable],
    max_categories: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(N, F)`` float32 (NaN where missing) and the mask of ragged rows.

    Text values that are not numbers are recorded in ``unparsable`` (by column, with their
    positions counted from ``start`` and their categories, up to ``max_categories + 1``) and
    read as NaN.
    """
    if len(names) == 1 and is_list_type(table.schema.field(names[0]).type):
        return _list_features(table.column(names[0]), names[0], file)
    x = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        column = _undictionary(table.column(name))
        x[:, j], bad = _numeric(column, name, file, what="feature column")
        if bad is not None and bad.any():
            found = unparsable.setdefault(name, _Unparsable(kind=column.type))
            found.add(_one_array(column), start, bad, max_categories)
    return x, np.zeros(table.num_rows, dtype=bool)


def _undictionary(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A dictionary-encoded column (a pandas categorical) as its values."""
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def _one_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _list_features(
    column: pa.ChunkedArray | pa.Array, name: str, file: str
) -> tuple[np.ndarray, np.ndarray]:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
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
    x[good] = _numeric(flat, name, file, what="feature list")[0].reshape(-1, width)
    return x, ragged


def _index_columns(table: Batch, label_column: str) -> list[str]:
    """The columns of ``table`` that hold a saved row index (see :data:`_UNNAMED`)."""
    listed = (table.schema.pandas_metadata or {}).get("index_columns") or []
    return [
        c
        for c in table.schema.names
        if c != label_column and (c in listed or _UNNAMED.fullmatch(c))
    ]


def _numeric(
    array: pa.Array | pa.ChunkedArray, name: str, file: str, *, what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Values as float32 with NaN for nulls, and for text the mask of values that are not
    numbers (``None`` for numeric types); any other type raises."""
    unparsable = None
    if _is_text(array.type):
        values, unparsable = parse_numbers(array)
    elif _is_numeric(array.type):
        values = pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    elif pa.types.is_temporal(array.type):
        raise DataError(_dates(f"type {array.type}"), file=file, column=name)
    else:
        raise DataError(
            f"{what} is not numeric (type {array.type})",
            file=file,
            column=name,
            rows=len(array) - array.null_count,
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf, caught as non-finite
        return values.astype(np.float32), unparsable


def parse_numbers(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Text as float64 (NaN for nulls and non-numbers) and the mask of non-numbers.

    Arrow's parser takes the common case at C speed; only text it rejects (stray spaces,
    words) goes through pandas, which also accepts what Arrow's parser does not.
    """
    try:
        numbers = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        return numbers, np.zeros(len(numbers), dtype=bool)
    except pa.ArrowInvalid:
        pass
    text = pd.Series(array.to_numpy(zero_copy_only=False), dtype=object)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    spelled_nan = text.str.strip().str.lower().isin(_NAN_SPELLINGS).to_numpy()
    return numbers, np.isnan(numbers) & text.notna().to_numpy() & ~spelled_nan


def class_name_labels(
    column: pa.ChunkedArray | pa.Array,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None:
    """A label column of class names: ``(codes, missing, names)``, the names sorted, each row's
    code its name's index (0 where missing: null or blank); ``None`` unless the column is text
    (or dictionary-encoded text) holding at least one name and no number at all."""
    if pa.types.is_dictionary(column.type) and _is_text(column.type.value_type):
        column = pc.cast(column, column.type.value_type)
    if not _is_text(column.type):
        return None
    text = pc.utf8_trim_whitespace(column)
    present = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False).to_numpy(
        zero_copy_only=False
    )
    if not present.any() or not parse_numbers(text)[1][present].all():
        return None
    names = tuple(sorted(pc.unique(text.filter(pa.array(present))).to_pylist()))
    codes = pc.index_in(text, value_set=pa.array(names, pa.string()))
    return pc.fill_null(codes, 0).to_numpy(zero_copy_only=False).astype(np.int64), ~present, names


def parse_labels(
    column: pa.ChunkedArray | pa.Array, name: str, file: str
) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 (0 where bad) and the mask of rows whose label is not an integer.

    Integer and boolean columns are taken as they are (nulls are bad); floats and numeric
    strings count when they hold whole numbers.

    Raises:
        DataError: The column's type cannot hold integer labels at all.
    """
    if pa.types.is_dictionary(column.type):  # e.g. a pandas categorical: its values count
        column = pc.cast(column, column.type.value_type)
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        bad = column.is_null().to_numpy(zero_copy_only=False)
        labels = pc.cast(column.fill_null(0), pa.int64()).to_numpy(zero_copy_only=False)
        return labels, bad
    if _is_text(kind):
        try:  # whole numbers exactly, even beyond float64's 2**53
            return parse_labels(pc.cast(column, pa.int64()), name, file)
        except pa.ArrowInvalid:
            values = parse_numbers(column)[0]
    elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
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


# A number written with a decimal comma (5,1 or -0,25), as spreadsheets in many locales export.
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+")


def _dates(seen: str) -> str:
    """Why a column of dates (``seen``: examples, or its type) is refused, and what to do."""
    return (
        f"feature column holds dates or times ({seen}), which are neither numbers nor "
        "categories: turn it into numbers first (e.g. days since a reference date), or leave "
        "it out with data.drop_columns"
    )


def _numbers_with_commas(found: _Unparsable) -> bool:
    """Whether a column's words include numbers written with a decimal comma: a file saved
    in another locale, not categories."""
    return any(_DECIMAL_COMMA.fullmatch(word) for word in found.categories)


def _raise_unparsable(checked: _Checked, file: str, numbering: RowNumbering) -> None:
    """Text that is neither a number nor a category in a feature column is an error even with
    ``drop_invalid``: numbers with a decimal comma, or a column that mixes numbers and words
    (named by whichever is rarer: the odd ones out)."""
    for j, name in enumerate(checked.names):
        found = checked.unparsable.get(name)
        if found is None:
            continue
        words = np.concatenate(found.positions)
        examples = found.examples[:_EXAMPLES]
        numbers = np.flatnonzero(np.isfinite(checked.x[:, j]))
        if _numbers_with_commas(found):
            message = (
                f"feature column is not numeric (type {found.kind}): values such as {examples} "
                "are not numbers; a decimal comma? save the file with '.' as the decimal point, "
                "or with ';' between fields (a ;-separated file is read with decimal commas)"
            )
        elif len(numbers) < len(words):
            message = (
                f"feature column of words (such as {examples}) holds {len(numbers)} numbers: "
                "a column of words becomes one feature per word, so correct or remove the "
                "numbers, or leave the column out with data.drop_columns"
            )
            words = numbers
        else:
            message = (
                f"feature column of numbers holds {len(words)} words such as {examples}: correct "
                "or remove them, or leave the column out with data.drop_columns"
            )
        raise DataError(
            message, file=file, column=name, rows=len(words), positions=words, numbering=numbering
        )


def _raise_first_problem(
    checked: _Checked, label_column: str, file: str, numbering: RowNumbering
) -> None:
    total = len(checked.labels)
    hint = "; set data.drop_invalid=true to drop such rows"
    ragged, non_finite, bad_label = (checked.masks[r] for r in DROP_REASONS)
    names, x = checked.names, checked.x
    where = {"file": file, "numbering": numbering}
    if ragged.any():
        raise DataError(
            f"feature lists have ragged lengths {checked.ragged_lengths[:5]} (of {total} rows)"
            f"{hint}",
            column=names[0],
            rows=int(ragged.sum()),
            positions=np.flatnonzero(ragged),
            **where,
        )
    if non_finite.any():
        raise DataError(
            f"features are NaN, inf or missing (of {total} rows){_per_column(x, names)}"
            f"{_FILL_HINT if not np.isinf(x).any() else hint}",
            column=_first_non_finite_column(x, names),
            rows=int(non_finite.sum()),
            positions=np.flatnonzero(non_finite),
            **where,
        )
    if bad_label.any() and checked.labels_missing:
        raise DataError(
            f"labels are missing (empty or null) in {int(bad_label.sum())} of {total} rows{hint}",
            column=label_column,
            rows=int(bad_label.sum()),
            positions=np.flatnonzero(bad_label),
            **where,
        )
    if bad_label.any():
        raise DataError(
            f"labels must be integers (class indices) or all class names; {int(bad_label.sum())} "
            f"of {total} rows are not integers (e.g. {checked.label_examples}){hint}",
            column=label_column,
            rows=int(bad_label.sum()),
            positions=np.flatnonzero(bad_label),
            **where,
        )


_FILL_HINT = (
    "; set data.fill_missing=true to fill missing values with the training split's mean, or "
    "data.drop_invalid=true to drop such rows"
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


def is_list_type(kind: pa.DataType) -> bool:
    """Whether an Arrow type is a list of any kind (variable, large or fixed size)."""
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
