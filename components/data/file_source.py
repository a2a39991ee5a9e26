"""User files (Parquet or CSV) from a local path or any fsspec URL."""

from __future__ import annotations

import hashlib

import fsspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from components.data.errors import DataError
from components.data.labeled import LabeledArrays
from components.data.spec import DataSpec
from components.data.validation import table_to_labeled

_HASH_CHUNK_BYTES = 8 << 20
_READERS = {"parquet": pq.read_table, "csv": pa_csv.read_csv}


def open_checked(path: str) -> tuple[AbstractFileSystem, str]:
    """Resolve ``path`` to a filesystem and check it names a non-empty file.

    Raises:
        DataError: The path cannot be resolved, does not exist, is a folder or has 0 bytes.
    """
    try:
        fs, fs_path = fsspec.core.url_to_fs(path)
    except (ValueError, ImportError) as err:
        raise DataError(f"cannot open this path or URL: {err}", file=path) from err
    if not fs.exists(fs_path):
        raise DataError("file does not exist", file=path)
    if fs.isdir(fs_path):
        raise DataError("is a folder; expected a single Parquet or CSV file", file=path)
    if fs.size(fs_path) == 0:
        raise DataError("file is empty (0 bytes)", file=path, rows=0)
    return fs, fs_path


def hash_file(path: str) -> str:
    """SHA-256 of the file's bytes, read in chunks so large files need little memory."""
    fs, fs_path = open_checked(path)
    digest = hashlib.sha256()
    with fs.open(fs_path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_table(path: str, file_format: str, columns: list[str] | None = None) -> pa.Table:
    """Read a whole Parquet or CSV file into an Arrow table.

    Args:
        path: Local path or fsspec URL.
        file_format: ``parquet`` or ``csv``.
        columns: Parquet only: read just these columns (``None``: all).

    Raises:
        DataError: The file is missing, empty, unparsable, or has no rows.
    """
    fs, fs_path = open_checked(path)
    with fs.open(fs_path, "rb") as handle:
        try:
            options = {"columns": columns} if columns is not None else {}
            table = _READERS[file_format](handle, **options)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"cannot be read as {file_format}: {err}", file=path) from err
    if table.num_rows == 0:
        raise DataError("file has no rows", file=path, rows=0)
    return table


def load_file(spec: DataSpec) -> LabeledArrays:
    """Read and validate the file a ``parquet``/``csv`` spec points to."""
    assert spec.path is not None  # DataSpec guarantees a path for file sources
    table = read_table(spec.path, spec.source)
    return table_to_labeled(
        table,
        file=spec.path,
        label_column=spec.label_column,
        feature_columns=spec.feature_columns,
        drop_invalid=spec.drop_invalid,
    )
