"""Inputs a trained model has not seen, read the way its dataset was: ``sennflow predict``.

A table (CSV or Parquet) needs the columns the model was trained on, by name; other columns are
ignored. Numbers are standardised with the training split's mean and std; a word column is
one-hot encoded with the training vocabulary (a word the model never saw is an error, not a
silent zero). A missing value is filled with the training mean only when the run was trained
with ``data.fill_missing``, else it is an error naming the rows. A dataset whose features were
one list column (``x``) takes a table with one list column of the same length. When the
table holds the run's label column, its rows are scored too.

Image files (one, or a folder searched recursively, hidden files left out) are decoded, resized
and centre-cropped exactly as the test split is. A folder whose first-level subfolders carry
the run's class names is labelled by them, so a held-out folder is scored; any other layout is
predicted without labels. A Parquet file with an image-bytes column (as ``data=parquet`` ingests
it) is decoded the same way, labelled by the run's label column where it has one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.data.errors import CSV_LINES, ROW_INDICES, DataError, RowNumbering
from components.data.file_source import csv_batches, read_parquet
from components.data.image_folder import images_below
from components.data.image_table import hf_class_names, image_bytes, image_paths, is_image_type
from components.data.images import IMAGE_SUFFIXES
from components.data.reader import DatasetMeta, image_decoder
from components.data.validation import is_list_type, parse_numbers

NO_LABEL = -1  # a row or file whose class the input does not say
DECODE_THREADS = min(8, os.cpu_count() or 1)
_LIST_FEATURE = re.compile(r"(.+)\[(\d+)\]")


@dataclass(frozen=True)
class InputBatch:
    """Rows to predict, as the model takes them.

    Attributes:
        ids: Per row, where it came from: a file's path below the input folder, or the row's
            CSV line / Parquet row index.
        x: ``(n, *feature_shape)`` float32, standardised as the model saw its training data.
        labels: Per row, the class index the input gives it, or :data:`NO_LABEL`.
        bad: Files of this batch that could not be used: ``(path, reason)``.
    """

    ids: list[str]
    x: np.ndarray
    labels: np.ndarray
    bad: tuple[tuple[str, str], ...] = ()


def check_exists(path: str) -> None:
    """:class:`DataError` unless ``path`` is a URL or an existing file or folder."""
    if "://" not in path and not Path(path).exists():
        raise DataError("does not exist", file=path)


def input_kind(path: str, meta: DatasetMeta) -> str:
    """``"images"``, ``"image_table"`` (Parquet with an image-bytes column) or ``"table"``:
    what the model of ``meta`` takes, checked against ``path``.

    Raises:
        DataError: The path does not exist, or holds the other kind of input.
    """
    local = Path(path)
    wants = "images" if meta.is_image else "table"
    check_exists(path)
    if local.is_dir():
        given = "table" if _is_parquet(local) else "images" if _has_images(local) else None
    elif local.suffix.lower() in IMAGE_SUFFIXES:
        given = "images"
    elif _is_table(path):
        given = "table"
    else:  # e.g. a phone's HEIC photo, or a .txt export
        raise DataError(
            f"is neither an image file ({', '.join(IMAGE_SUFFIXES)}) nor a CSV or Parquet file "
            "(.csv, .tsv, .parquet, .pq); convert it to one of them",
            file=path,
        )
    if (given, wants) == ("table", "images") and _is_parquet(local):
        return "image_table"  # encoded images in a Parquet column
    if given != wants:
        takes = (
            f"image files (one, or a folder of them) sized as its {meta.feature_shape[-1]} px "
            "crops are made"
            if wants == "images"
            else "a CSV or Parquet file with the columns it was trained on"
        )
        holds = {None: "is a folder with no image or Parquet file", "table": "holds a table"}
        raise DataError(
            f"{holds.get(given, 'holds images')}, but the model takes {takes}", file=path
        )
    return wants


_TABLE_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq"}  # ``.csv.gz`` too: any of its suffixes


def _is_table(path: str) -> bool:
    """A CSV or Parquet file by its name, a Parquet file by its first bytes, or a URL (read as
    a table: a remote folder of Parquet parts has no suffix)."""
    if "://" in path or _TABLE_SUFFIXES & {s.lower() for s in PurePosixPath(path).suffixes}:
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError as err:
        raise DataError(f"cannot be read ({err.strerror or err})", file=path) from err


def _has_images(folder: Path) -> bool:
    """Whether ``folder`` or a folder below it holds an image file."""
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*"))


def _is_parquet(path: Path) -> bool:
    """A Parquet file, or a folder holding Parquet files."""
    if path.is_dir():
        return any(p.suffix.lower() in (".parquet", ".pq") for p in path.iterdir())
    return path.suffix.lower() in (".parquet", ".pq")


# --- tables -----------------------------------------------------------------------------------


def read_table(path: str, meta: DatasetMeta, encoding: str = "utf-8") -> InputBatch:
    """The rows of a CSV or Parquet file as the model takes them (see the module docstring).

    Raises:
        DataError: The file cannot be read, lacks a column the model needs, holds a value
            that is not a number where one is needed, a word the model never saw, or a missing
            value the run did not fill.
    """
    is_csv = bool({".csv", ".tsv"} & {s.lower() for s in PurePosixPath(path).suffixes})
    if is_csv:
        batches = [b for b in csv_batches(path, encoding=encoding) if b.num_rows]
        if not batches:
            raise DataError("file has no rows", file=path, rows=0)
        table = pa.Table.from_batches(batches)
    else:
        table = read_parquet(path)
    numbering = CSV_LINES if is_csv else ROW_INDICES
    x = _table_features(table, meta, path, numbering)
    x -= meta.mean
    x *= (1.0 / meta.std).astype(np.float32)
    ids = [f"{numbering.singular} {i + numbering.offset}" for i in range(table.num_rows)]
    x = x.reshape(len(x), *meta.feature_shape)
    return InputBatch(ids=ids, x=x, labels=_table_labels(table, meta))


def _table_features(
    table: pa.Table, meta: DatasetMeta, path: str, numbering: RowNumbering
) -> np.ndarray:
    """``(n, F)`` float32 features in the model's order, not yet standardised."""
    names = meta.feature_names
    lists = [c for c in table.column_names if is_list_type(table.schema.field(c).type)]
    if names is None or (lists and _list_column(names) is not None):
        return _list_column_features(table, meta, lists, path)
    categorical = meta.categorical
    columns = list(dict.fromkeys(categorical[n][0] if n in categorical else n for n in names))
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(
            f"lacks the columns {missing[:10]}{' ...' if len(missing) > 10 else ''} that the "
            f"model was trained on (it has {table.column_names[:20]})",
            file=path,
        )
    words = meta.raw.get("categories") or {}
    fill = bool((meta.raw.get("source") or {}).get("fill_missing"))
    blocks = []
    for column in columns:
        if column in words:
            blocks.append(_one_hot(table.column(column), words[column], column, path, numbering))
        else:
            blocks.append(_numbers(table.column(column), column, path, numbering)[:, None])
    x = np.concatenate(blocks, axis=1)
    _fill_or_refuse(x, columns, words, meta, fill, path, numbering)
    return x


def _list_column(names: tuple[str, ...]) -> str | None:
    """The one list column whose elements ``names`` are (``x[0]``, ``x[1]``, ...), or None."""
    matches = [_LIST_FEATURE.fullmatch(n) for n in names]
    if not all(matches) or len({m.group(1) for m in matches}) != 1:
        return None
    return matches[0].group(1)


def _list_column_features(
    table: pa.Table, meta: DatasetMeta, lists: list[str], path: str
) -> np.ndarray:
    """The features of a table with one list column of ``meta.num_features`` numbers."""
    width = meta.num_features
    if len(lists) != 1:
        found = f"{len(lists)} list columns {lists}" if lists else "no list column"
        raise DataError(
            f"the model takes one list column of {width} numbers per row; the file has {found}",
            file=path,
        )
    column = table.column(lists[0]).combine_chunks()
    lengths = pc.list_value_length(column).fill_null(-1).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(lengths != width)
    if wrong.size:
        raise DataError(
            f"rows must hold {width} numbers (the model's input); some hold "
            f"{sorted(set(lengths[wrong].tolist()))[:5]}",
            file=path,
            column=lists[0],
            rows=int(wrong.size),
            positions=wrong,
        )
    try:
        flat = pc.cast(column.flatten(), pa.float32()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise DataError(f"lists must hold numbers: {err}", file=path, column=lists[0]) from err
    x = np.array(flat, dtype=np.float32).reshape(len(column), width)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise DataError(
            "rows hold missing or infinite values", file=path, column=lists[0], rows=int(bad.size)
        )
    return x


def _numbers(column: pa.ChunkedArray, name: str, path: str, numbering: RowNumbering) -> np.ndarray:
    """A numeric column as float32 (NaN where missing); text that is no number is an error."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values, bad = parse_numbers(column)
        if bad.any():
            rows = np.flatnonzero(bad)
            examples = column.filter(pa.array(bad)).slice(0, 3).to_pylist()
            raise DataError(
                f"holds text that is not a number (e.g. {examples}); the model was trained on "
                "numbers in this column",
                file=path,
                column=name,
                rows=int(rows.size),
                positions=rows,
                numbering=numbering,
            )
        return values.astype(np.float32)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float32)
    raise DataError(f"is not numeric (type {kind})", file=path, column=name)


def _one_hot(
    column: pa.ChunkedArray,
    vocabulary: list[str],
    name: str,
    path: str,
    numbering: RowNumbering,
) -> np.ndarray:
    """A word column as one 0/1 feature per training word; NaN in every one where missing."""
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    values = text.to_pylist()
    index = {word: j for j, word in enumerate(vocabulary)}
    out = np.zeros((len(values), len(vocabulary)), dtype=np.float32)
    unknown = []
    for i, word in enumerate(values):
        if word is None or word == "":
            out[i] = np.nan
        elif word in index:
            out[i, index[word]] = 1.0
        else:
            unknown.append(i)
    if unknown:
        seen = list(dict.fromkeys(values[i] for i in unknown))[:5]
        raise DataError(
            f"holds words the model never saw in training ({seen}); it knows {vocabulary[:20]}",
            file=path,
            column=name,
            rows=len(unknown),
            positions=unknown,
            numbering=numbering,
        )
    return out


def _fill_or_refuse(
    x: np.ndarray,
    columns: list[str],
    words: dict,
    meta: DatasetMeta,
    fill: bool,
    path: str,
    numbering: RowNumbering,
) -> None:
    """Fill missing values as the run's ingest did (``data.fill_missing``), or refuse them."""
    missing = np.isnan(x)
    if not missing.any():
        return
    if fill:  # a number takes its training mean; a word column's row gets no word
        numbers = np.isnan(x) & ~_word_features(columns, words)
        x[numbers] = np.broadcast_to(meta.mean, x.shape)[numbers]
        x[np.isnan(x)] = 0.0
        return
    rows = np.flatnonzero(missing.any(axis=1))
    widths = [len(words[c]) if c in words else 1 for c in columns]
    per_block = np.split(missing.any(axis=0), np.cumsum(widths)[:-1])
    named = [c for c, block in zip(columns, per_block, strict=True) if block.any()]
    raise DataError(
        f"rows have missing values (in {named[:10]}), and the run was trained without "
        "data.fill_missing (fill them, or train with data.fill_missing=true)",
        file=path,
        rows=int(rows.size),
        positions=rows,
        numbering=numbering,
    )


def _word_features(columns: list[str], words: dict) -> np.ndarray:
    """``(1, F)``: which features are a word column's 0/1 features."""
    flags = [flag for c in columns for flag in ([True] * len(words[c]) if c in words else [False])]
    return np.asarray(flags, dtype=bool)[None, :]


def _table_labels(table: pa.Table, meta: DatasetMeta) -> np.ndarray:
    """Each row's class index from the run's label column, where the table has it."""
    label_column = (meta.raw.get("source") or {}).get("label_column")
    labels = np.full(table.num_rows, NO_LABEL, dtype=np.int64)
    if not label_column or label_column not in table.column_names:
        return labels
    values = table.column(label_column).to_pylist()
    if hf_class_names(table.schema, label_column) == meta.class_names:  # indices into them
        for i, value in enumerate(values):
            if isinstance(value, int) and 0 <= value < meta.num_classes:
                labels[i] = value
        return labels
    index = {name: k for k, name in enumerate(meta.class_names)}
    for i, value in enumerate(values):
        labels[i] = index.get(_label_text(value), NO_LABEL)
    return labels


def _label_text(value) -> str | None:
    """A label cell as a class name: ``3`` and ``3.0`` are ``"3"``; text is stripped."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None if value is None else str(value).strip()


# --- images -----------------------------------------------------------------------------------


def image_inputs(path: str, meta: DatasetMeta) -> tuple[Path, list[str], np.ndarray, int]:
    """The image files of ``path`` (a file, or a folder searched recursively), relative to the
    folder, each one's class index by its first subfolder (:data:`NO_LABEL` where the
    subfolder is no class of the run), and how many hidden or non-image files were left out.

    Raises:
        DataError: ``path`` names no image file, or a folder holds none.
    """
    root = Path(path)
    if root.is_file():
        return root.parent, [root.name], np.full(1, NO_LABEL, dtype=np.int64), 0
    files, others, hidden = images_below(root)
    if not files:
        raise DataError(
            f"holds no image file ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders",
            file=path,
        )
    index = {name: k for k, name in enumerate(meta.class_names)}
    labels = np.array(
        [index.get(f.split("/")[0], NO_LABEL) if "/" in f else NO_LABEL for f in files],
        dtype=np.int64,
    )
    return root, files, labels, len(others) + hidden


def image_batches(
    root: Path,
    files: list[str],
    labels: np.ndarray,
    meta: DatasetMeta,
    batch_size: int,
    threads: int = DECODE_THREADS,
) -> Iterator[InputBatch]:
    """The image files decoded as the test split is, ``batch_size`` at a time by ``threads``
    threads (torchvision decodes and resizes without holding the GIL); a file that cannot be
    decoded, or is smaller than the model's input, is left out of its batch and named in
    ``bad``."""
    return _decoded(
        files, lambda i: (root / files[i]).read_bytes(), labels, meta, batch_size, threads
    )


def image_table_batches(
    path: str, meta: DatasetMeta, batch_size: int, threads: int = DECODE_THREADS
) -> tuple[Iterator[InputBatch], int]:
    """The images of a Parquet file's image-bytes column (binary, or Hugging Face's ``{bytes,
    path}`` struct) as :func:`image_batches` decodes files, named by their ``path`` or row index,
    labelled by the run's label column where the file has it; and how many rows there are.

    Raises:
        DataError: The file has no image-bytes column, or several.
    """
    table = read_parquet(path)
    columns = [c for c in table.column_names if is_image_type(table.schema.field(c).type)]
    if len(columns) != 1:
        raise DataError(
            f"the model takes images: the file needs one column of encoded images (binary, or "
            f"a {{bytes, path}} struct), it has {len(columns)} {columns}",
            file=path,
        )
    images = table.column(columns[0])
    blobs = image_bytes(images).combine_chunks()
    ids = [f"row index {p}" if p.isdigit() else p for p in image_paths(images)]
    labels = _table_labels(table, meta)

    def load(i: int):
        return blobs[i].as_buffer()

    return _decoded(ids, load, labels, meta, batch_size, threads), table.num_rows


def _decoded(
    ids: list[str], load, labels: np.ndarray, meta: DatasetMeta, batch_size: int, threads: int
) -> Iterator[InputBatch]:
    """Decode ``load(i)`` for each of ``ids`` in batches (see :func:`image_batches`)."""
    decode = image_decoder(meta, refuse_smaller=True)

    def read(i: int) -> np.ndarray | str:
        try:
            data = load(i)
            if data is None:
                return "no image bytes (null)"
            return decode(data)
        except (ValueError, OSError) as err:  # ImageDecodeError is a ValueError
            return str(err)

    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(ids), batch_size):
            numbers = range(start, min(start + batch_size, len(ids)))
            decoded = list(pool.map(read, numbers))
            kept = [i for i, row in zip(numbers, decoded, strict=True) if not isinstance(row, str)]
            bad = tuple(
                (ids[i], row)
                for i, row in zip(numbers, decoded, strict=True)
                if isinstance(row, str)
            )
            rows = [row for row in decoded if not isinstance(row, str)]
            x = np.stack(rows) if rows else np.empty((0, meta.num_features), np.float32)
            x = x.reshape(len(x), *meta.feature_shape)
            yield InputBatch([ids[i] for i in kept], x, labels[kept], bad)
