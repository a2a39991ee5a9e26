"""A Parquet file with an image-bytes column: ``data=parquet`` for datasets already in Arrow.

The column holds each image's encoded file: either plain ``binary`` or the ``{bytes, path}``
struct of Hugging Face image datasets. It is the image column when ``feature_columns`` names
it alone or, with ``feature_columns`` unset, when it is the table's only such column (other
columns are then ignored). Labels come from ``label_column`` and are validated as for tabular
files. Class names come from the Hugging Face schema metadata (``info.features.<label>.names``,
labels are then indices into it) when present, else they are the sorted label values.

The label and image columns are read into memory (encoded bytes only, as the tabular Parquet
source reads its table); each Dask task then gets a copy of just its shard's bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.data.errors import DataError
from components.data.file_source import parquet_files, parquet_splits, read_parquet
from components.data.image_ingest import BadImage, ImageRows
from components.data.layout import SPLITS
from components.data.spec import DataSpec
from components.data.validation import class_name_labels, parse_labels

_HF_METADATA_KEY = b"huggingface"


def is_image_type(kind: pa.DataType) -> bool:
    """Whether a column of this type holds encoded images: binary, or a struct with ``bytes``."""
    if pa.types.is_struct(kind):
        index = kind.get_field_index("bytes")
        return index >= 0 and _is_binary(kind.field(index).type)
    return _is_binary(kind)


def find_image_column(spec: DataSpec) -> str | None:
    """The image column of a ``parquet`` spec's file, or ``None`` for a tabular file.

    A file that cannot be read as Parquet gives ``None``: the tabular reader then says why.

    Raises:
        DataError: Several image columns and none chosen, or one mixed with other features.
    """
    if spec.source != "parquet" or spec.path is None:
        return None
    schema = _read_schema(spec.path)
    if schema is None:
        return None
    images = [
        name
        for name in (spec.feature_columns or schema.names)
        if name in schema.names and name != spec.label_column and name not in spec.drop_columns
        and is_image_type(schema.field(name).type)
    ]  # fmt: skip
    if spec.feature_columns is not None and images and len(spec.feature_columns) > 1:
        raise DataError(
            f"image column {images[0]!r} is mixed with other feature columns "
            f"{[c for c in spec.feature_columns if c != images[0]]}; name only the image column",
            file=spec.path,
            column=images[0],
        )
    if len(images) > 1:
        raise DataError(
            f"several image columns {images}; choose one with data.feature_columns=[<name>]",
            file=spec.path,
        )
    return images[0] if images else None


def table_rows(spec: DataSpec, column: str) -> ImageRows:
    """Read the image and label columns of the file as candidate rows.

    Rows with a label that is not a valid class index are rejected (dropped or reported with
    the invalid images).

    Raises:
        DataError: The label column is missing or of a non-integer type, or there are fewer
            than two classes.
    """
    assert spec.path is not None
    table = _read_columns(spec.path, column, spec.label_column)
    images = table.column(column)
    paths = image_paths(images)
    labels, bad = parse_labels(table.column(spec.label_column), spec.label_column, spec.path)
    names = hf_class_names(table.schema, spec.label_column)
    expected = "an integer"
    named = None if names is not None else class_name_labels(table.column(spec.label_column))
    if named is not None:  # a column of class names
        labels, bad, names = named
        classes, expected = np.arange(len(names)), "a class name"
    elif names is None:
        classes = np.unique(labels[~bad])
        names = tuple(str(c) for c in classes.tolist())
    else:
        classes = np.arange(len(names))
        bad |= (labels < 0) | (labels >= len(names))
        expected = f"a class index from 0 to {len(names) - 1} (Hugging Face class names)"
    if len(names) < 2:
        raise DataError(
            f"only one class ({names[0] if names else 'none'}) in the label column; "
            "classification needs at least 2",
            file=spec.path,
            column=spec.label_column,
            rows=int((~bad).sum()),
        )
    keep = np.flatnonzero(~bad)
    splits = parquet_splits(spec.path)
    return ImageRows(
        paths=tuple(paths[i] for i in keep),
        labels=np.searchsorted(classes, labels[keep]).astype(np.int64),
        class_names=names,
        layout="parquet" if splits is None else "parquet_split_files",
        where=spec.path,
        unit="rows",
        blobs=image_bytes(images).take(pa.array(keep)),
        splits=None if splits is None else tuple(splits[keep].tolist()),
        given_splits=() if splits is None else tuple(s for s in SPLITS if s in set(splits)),
        rejected=_bad_labels(table.column(spec.label_column), paths, bad, expected),
    )


def hf_class_names(schema: pa.Schema, label_column: str) -> tuple[str, ...] | None:
    """``info.features.<label_column>.names`` of the Hugging Face schema metadata, if any."""
    raw = (schema.metadata or {}).get(_HF_METADATA_KEY)
    try:
        names = json.loads(raw)["info"]["features"][label_column]["names"]
    except (TypeError, ValueError, KeyError):
        return None
    return tuple(str(n) for n in names) if isinstance(names, list) else None


def _read_schema(path: str) -> pa.Schema | None:
    """The schema of the (first) Parquet file ``path`` names; None when it is not Parquet."""
    fs, files = parquet_files(path)
    try:
        with fs.open(files[0], "rb") as handle:
            return pq.read_schema(handle)
    except (pa.ArrowInvalid, OSError):
        return None


def _read_columns(path: str, column: str, label_column: str) -> pa.Table:
    schema = _read_schema(path)
    if schema is not None and label_column not in schema.names:
        raise DataError(
            f"label column not found; the file has columns {schema.names}",
            file=path,
            column=label_column,
        )
    return read_parquet(path, columns=[column, label_column])


def image_paths(images: pa.ChunkedArray) -> list[str]:
    """The struct's ``path`` where it has one, else the row index."""
    given: Sequence[str | None] = [None] * len(images)
    if pa.types.is_struct(images.type) and images.type.get_field_index("path") >= 0:
        given = pc.struct_field(images, "path").to_pylist()
    return [str(path) if path else str(i) for i, path in enumerate(given)]


def image_bytes(images: pa.ChunkedArray) -> pa.ChunkedArray:
    """The encoded files of an image column: its ``bytes`` field, or the binary column."""
    if pa.types.is_struct(images.type):
        return pc.struct_field(images, "bytes")
    return images


def _bad_labels(
    column: pa.ChunkedArray, paths: list[str], bad: np.ndarray, expected: str
) -> tuple[BadImage, ...]:
    values = column.to_pylist()
    return tuple(
        BadImage(paths[i], "invalid_label", f"label {values[i]!r} is not {expected}")
        for i in np.flatnonzero(bad)
    )


def _is_binary(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
