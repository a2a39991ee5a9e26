"""User files from a local path or any fsspec URL: a CSV file, or Parquet as one file, a
folder of part files or a glob."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from components.data.errors import CSV_LINES, DataError
from components.data.labeled import LabeledArrays
from components.data.layout import SPLIT_NAMES
from components.data.spec import DataSpec
from components.data.validation import batches_to_labeled, table_to_labeled

_HASH_CHUNK_BYTES = 8 << 20
# CSV text parsed per block. Arrow's streaming reader reads up to 32 blocks ahead of the
# consumer (its background reader's queue), so the block size bounds memory: 1 MiB keeps the
# raw text held at once near 32 MiB whatever the file's size, at full parsing speed.
CSV_BLOCK_BYTES = 1 << 20
# The delimiters a CSV file may use, the default first; what the header line splits on is used.
_DELIMITERS = (",", ";", "\t", "|")
# A ;-separated file is a spreadsheet saved in a locale whose decimal point is a comma (that is
# why it is not ,-separated): its cells that are numbers with a decimal comma are read as numbers.
_DECIMAL_COMMA = r"^([-+]?[0-9]*),([0-9]+)$"
# Enough of a file's start to hold its header line.
_SNIFF_BYTES = 1 << 16
# A file or folder name that names a split: "train-00000-of-00004.parquet", "test/", "val.parquet".
_SPLIT_NAME = re.compile(rf"({'|'.join(SPLIT_NAMES)})(?=$|[-_.])", re.IGNORECASE)
# A path holding one of these is a glob (data.path='/data/train-*.parquet').
_GLOB_CHARS = "*?["


def open_checked(path: str) -> tuple[AbstractFileSystem, str]:
    """Resolve ``path`` to a filesystem and check it names a non-empty file.

    Raises:
        DataError: The path cannot be resolved, does not exist, is a folder or has 0 bytes.
    """
    fs, fs_path = _resolve(path)
    if not fs.exists(fs_path):
        raise DataError("file does not exist", file=path)
    if fs.isdir(fs_path):
        raise DataError(
            "is a folder; expected a CSV file (a folder of Parquet files is read with "
            "data=parquet)",
            file=path,
        )
    if fs.size(fs_path) == 0:
        raise DataError("file is empty (0 bytes)", file=path, rows=0)
    return fs, fs_path


def hash_file(path: str) -> str:
    """SHA-256 of the file's bytes, read in chunks so large files need little memory.

    Raises:
        DataError: As :func:`open_checked`, or the file cannot be read (e.g. permissions).
    """
    return _sha256(*open_checked(path), shown=path)


def _sha256(fs: AbstractFileSystem, fs_path: str, shown: str) -> str:
    digest = hashlib.sha256()
    try:
        with fs.open(fs_path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as err:
        raise DataError(f"cannot be read: {err.strerror or err}", file=shown) from err
    return digest.hexdigest()


def parquet_files(path: str) -> tuple[AbstractFileSystem, list[str]]:
    """The Parquet files ``path`` names: one file, every ``*.parquet`` under a folder (as
    Spark, Dask and Hugging Face write datasets: ``part-0.parquet``, ``train-00000-of-00004
    .parquet``; names starting with ``.`` or ``_`` are skipped), or a glob's matches (a path
    that exists is never a glob); sorted.

    Raises:
        DataError: Nothing is there, a folder or glob holds no Parquet file, or one is empty.
    """
    fs, fs_path = _resolve(path)
    if fs.isdir(fs_path):
        files = [f for f in fs.find(fs_path) if _is_part(f.removeprefix(fs_path))]
        where = "the folder holds no .parquet file"
    elif any(char in path for char in _GLOB_CHARS) and not fs.exists(fs_path):
        files = [f for f in fs.glob(fs_path) if fs.isfile(f)]
        where = "no file matches this pattern"
    else:
        return open_checked(path)[0], [fs_path]
    if not files:
        raise DataError(where, file=path)
    empty = [f for f in files if fs.size(f) == 0]
    if empty:
        raise DataError(f"{len(empty)} of its Parquet files are empty (0 bytes)", file=empty[0])
    return fs, sorted(files)


def parquet_splits(path: str) -> np.ndarray | None:
    """Per row of :func:`read_parquet`, the split its file's name fixes, or None when no file
    name does (one file; part files). A name fixes a split when a part of its path, relative
    to the files' common folder, is or starts with ``train``, ``val``, ``valid``,
    ``validation`` or ``test`` then ``-``, ``_`` or ``.``: the Hugging Face Hub's
    ``train-00000-of-00004.parquet`` / ``test-...``, or ``train/`` and ``test/`` folders.

    Raises:
        DataError: Some files name a split and others none, or none names train.
    """
    fs, files = parquet_files(path)
    base = _common_folder(files)
    names = [_split_named(file.removeprefix(base)) for file in files]
    if len(files) == 1 or not any(names):
        return None
    unnamed = [file.removeprefix(base) for file, name in zip(files, names, strict=True) if not name]
    if unnamed:
        raise DataError(
            f"{len(unnamed)} of its {len(files)} Parquet files name no split "
            f"({', '.join(unnamed[:3])}{' ...' if len(unnamed) > 3 else ''}) while the others "
            "do (train, val, test); choose the files with a glob, e.g. "
            "data.path='<folder>/**/train-*.parquet'",
            file=path,
        )
    if "train" not in names:
        raise DataError(
            f"its Parquet files name the splits {sorted(set(names))} but none is train",
            file=path,
        )
    rows = []
    for file in files:
        with fs.open(file, "rb") as handle:
            rows.append(pq.read_metadata(handle).num_rows)
    return np.repeat(np.array(names), rows)


def _split_named(relative: str) -> str | None:
    """The split a Parquet file's relative path names (its own name first), if any."""
    for part in reversed(relative.split("/")):
        match = _SPLIT_NAME.match(part)
        if match:
            return SPLIT_NAMES[match[1].lower()]
    return None


def hash_parquet(path: str) -> str:
    """:func:`hash_file` of one Parquet file; of a folder or glob, SHA-256 over each file's
    name (relative to their common folder) and bytes: a renamed or changed part is a new
    dataset, a moved folder is not."""
    fs, files = parquet_files(path)
    if len(files) == 1 and files[0] == _resolve(path)[1]:
        return hash_file(path)
    base = _common_folder(files)
    digest = hashlib.sha256()
    for file in files:
        name = file.removeprefix(base)
        digest.update(f"{name}\0{_sha256(fs, file, fs.unstrip_protocol(file))}\0".encode())
    return digest.hexdigest()


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, or every file of a folder or glob (:func:`parquet_files`) as one
    table, rows in file-name order.

    Args:
        path: Local path or fsspec URL of a file, a folder or a glob.
        columns: Read just these columns (``None``: all).

    Raises:
        DataError: Missing, empty or unreadable files, files whose columns differ from the
            first's, or no rows.
    """
    fs, files = parquet_files(path)
    tables = []
    for file in files:
        shown = path if len(files) == 1 else fs.unstrip_protocol(file)
        with fs.open(file, "rb") as handle:
            try:
                table = pq.read_table(handle, columns=columns)
            except (pa.ArrowInvalid, OSError) as err:
                hint = _other_format_hint(file, "parquet")
                reason = str(err).rstrip(".")
                raise DataError(f"cannot be read as parquet: {reason}{hint}", file=shown) from err
        if tables and table.column_names != tables[0].column_names:
            raise DataError(
                f"has columns {table.column_names}, the dataset's first file "
                f"{fs.unstrip_protocol(files[0])} {tables[0].column_names}",
                file=shown,
            )
        tables.append(table)
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise DataError(f"its Parquet files' column types differ: {err}", file=path) from err
    if table.num_rows == 0:
        raise DataError("file has no rows" if len(files) == 1 else "no rows", file=path, rows=0)
    return table


def _resolve(path: str) -> tuple[AbstractFileSystem, str]:
    try:
        return fsspec.core.url_to_fs(path)
    except (ValueError, ImportError) as err:
        raise DataError(f"cannot open this path or URL: {err}", file=path) from err


def _is_part(relative: str) -> bool:
    """A data file of a Parquet dataset folder, not its metadata (``_SUCCESS``, ``.crc``)."""
    names = relative.strip("/").split("/")
    return names[-1].endswith(".parquet") and not any(n.startswith((".", "_")) for n in names)


def _common_folder(files: list[str]) -> str:
    """The longest folder path (ending in ``/``) all ``files`` lie under."""
    prefix = os.path.commonprefix(files)
    return prefix[: prefix.rfind("/") + 1]


def csv_batches(
    path: str, block_bytes: int = CSV_BLOCK_BYTES, encoding: str = "utf-8"
) -> Iterator[pa.RecordBatch]:
    """Stream a CSV file as record batches, one per block of about ``block_bytes`` of text.

    The delimiter is the one of ``,`` ``;`` tab ``|`` that splits the header line into the
    most columns (a spreadsheet's "CSV" is often ``;``-separated); a file named ``.gz``,
    ``.bz2``, ``.xz`` or ``.zip`` (its first file) is decompressed as it is read;
    ``encoding`` is the text's (Arrow transcodes anything else to UTF-8). Every column arrives
    as text (empty and ``NA``-like cells as nulls): types inferred from the first block would
    break on a later block whose values differ (integers, then floats or words), so the
    validation parses the numbers itself. In a ``;``-separated file, a cell that is a number with
    a decimal comma (``45062,25``) arrives with a decimal point.

    Raises:
        DataError: The file is missing, empty, not text in ``encoding`` or not valid CSV (e.g.
            a row with too many cells).
    """
    fs, fs_path = open_checked(path)
    try:
        with _open_decompressed(fs, fs_path) as handle:
            delimiter = _sniff_delimiter(handle.read(_SNIFF_BYTES), encoding)
        with _open_decompressed(fs, fs_path) as handle:
            names = _open_csv(handle, block_bytes, None, delimiter, encoding).schema.names
        with _open_decompressed(fs, fs_path) as handle:
            types = dict.fromkeys(names, pa.string())
            for batch in _open_csv(handle, block_bytes, types, delimiter, encoding):
                yield _decimal_points(batch) if delimiter == ";" else batch
    except UnicodeDecodeError as err:
        where = f"byte {err.object[err.start : err.start + 1].hex()} at offset {err.start}"
        raise _not_text(path, encoding, where) from err
    except (pa.ArrowInvalid, OSError, EOFError) as err:
        if "invalid UTF8" in str(err):
            raise _not_text(path, encoding, _first_line(err)) from err
        hint = _other_format_hint(fs_path, "csv")
        raise DataError(f"cannot be read as csv: {_first_line(err)}{hint}", file=path) from err


_SUFFIX_SOURCES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _other_format_hint(path: str, source: str) -> str:
    """``"; its name says csv: use data=csv"`` when the file's suffix names the other source
    (``bc.csv`` read with ``data=parquet``)."""
    suffixes = [suffix.lower() for suffix in PurePosixPath(path).suffixes]
    named = next((_SUFFIX_SOURCES[s] for s in reversed(suffixes) if s in _SUFFIX_SOURCES), None)
    if named is None or named == source:
        return ""
    return f"; its name says {named}: use data={named}"


def _not_text(path: str, encoding: str, where: str) -> DataError:
    return DataError(
        f"is not {encoding} text ({where}); set data.encoding to the file's encoding, e.g. "
        "data.encoding=latin-1",
        file=path,
    )


def _decimal_points(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` (text columns) with each number written with a decimal comma rewritten with a
    decimal point; other cells as they are."""
    columns = [
        pc.replace_substring_regex(column, pattern=_DECIMAL_COMMA, replacement=r"\1.\2")
        for column in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _open_decompressed(fs: AbstractFileSystem, fs_path: str):
    """The file's bytes, decompressed when its name says so (``.gz``, ``.bz2``, ...)."""
    return fs.open(fs_path, "rb", compression="infer")


def _sniff_delimiter(head: bytes, encoding: str) -> str:
    """The candidate delimiter that splits the first line into the most fields (``,`` on a
    tie: a one-column file)."""
    text = head.decode(encoding, errors="ignore")
    header = text.splitlines()[0] if text else ""
    return max(_DELIMITERS, key=lambda d: len(next(csv.reader([header], delimiter=d), [])))


def _open_csv(
    handle, block_bytes: int, types: dict | None, delimiter: str, encoding: str
) -> pa_csv.CSVStreamingReader:
    read = pa_csv.ReadOptions(block_size=block_bytes, encoding=encoding)
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    convert = pa_csv.ConvertOptions(column_types=types or {}, strings_can_be_null=True)
    return pa_csv.open_csv(handle, read_options=read, parse_options=parse, convert_options=convert)


def _first_line(err: Exception) -> str:
    """The error's first line, cut to 200 characters (Arrow quotes the offending row)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 200 else text[:200] + " ..."


def load_file(spec: DataSpec, *, csv_block_bytes: int = CSV_BLOCK_BYTES) -> LabeledArrays:
    """Read and validate the file a ``parquet``/``csv`` spec points to.

    A CSV file is streamed in blocks of ``csv_block_bytes`` (:func:`csv_batches`) and its bad
    rows are named by line number; Parquet rows by their 0-based index.
    """
    assert spec.path is not None  # DataSpec guarantees a path for file sources
    fields = {
        "file": spec.path,
        "label_column": spec.label_column,
        "feature_columns": spec.feature_columns,
        "drop_columns": spec.drop_columns,
        "drop_invalid": spec.drop_invalid,
        "fill_missing": spec.fill_missing,
        "max_categories": spec.max_categories,
    }
    if spec.source == "csv":
        batches = csv_batches(spec.path, csv_block_bytes, spec.encoding)
        return batches_to_labeled(batches, numbering=CSV_LINES, **fields)
    return table_to_labeled(read_parquet(spec.path), splits=parquet_splits(spec.path), **fields)
