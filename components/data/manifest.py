"""What a finished dataset folder holds, recorded in ``meta.json`` at ingest and checked before
a cached or downloaded copy is used.

Without it a deleted or truncated part file would be read silently short, or fail deep inside
Arrow, and a ``meta.json`` edited by hand would describe rows that are not there. Sizes and the
Parquet footers' row counts are cheap to check on every cache hit; a checksum of every part
would cost a full read of the dataset each time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.data.layout import DATA_DIR, META_FILE, SPLITS, split_files

# Key of the manifest in meta.json: relative path -> {"bytes": size, "rows": rows}.
FILES_KEY = "files"


def file_manifest(root: str | Path) -> dict[str, dict[str, int]]:
    """Every Parquet part of the dataset folder ``root`` with its size and row count."""
    root = Path(root)
    return {
        name: {"bytes": (root / name).stat().st_size, "rows": _footer_rows(root / name)}
        for name in _part_names(root)
    }


def dataset_problem(root: str | Path, meta: dict) -> str | None:
    """Why the folder ``root`` does not hold the dataset ``meta`` describes, or ``None``.

    Checks that every recorded part exists with its recorded size and no other part is
    there, that each footer still holds its recorded rows, and that the rows of each split
    add up to ``meta["row_counts"]``.
    """
    root = Path(root)
    files = meta.get(FILES_KEY)
    if not isinstance(files, dict):
        return f"{META_FILE} has no file manifest (written by an older sennflow)"
    try:
        return _files_problem(root, files) or _rows_problem(files, meta)
    except (KeyError, TypeError, AttributeError) as err:
        return f"{META_FILE} is malformed ({err!r})"


def read_meta(root: str | Path) -> tuple[dict | None, str | None]:
    """``(meta, None)`` for a complete dataset folder, else ``(None, why not)``."""
    try:
        meta = json.loads((Path(root) / META_FILE).read_text())
    except FileNotFoundError:
        return None, f"{META_FILE} is missing"
    except (OSError, ValueError) as err:
        return None, f"{META_FILE} cannot be read as JSON ({err})"
    if not isinstance(meta, dict):
        return None, f"{META_FILE} is not a JSON object"
    problem = dataset_problem(root, meta)
    return (None, problem) if problem else (meta, None)


def _files_problem(root: Path, files: dict) -> str | None:
    for name, record in files.items():
        try:
            size = (root / name).stat().st_size
        except FileNotFoundError:
            return f"{name} is missing"
        if size != record["bytes"]:
            return f"{name} has {size} bytes, {record['bytes']} were written"
        try:
            rows = _footer_rows(root / name)
        except (pa.ArrowInvalid, OSError) as err:
            return f"{name} has an unreadable Parquet footer ({err})"
        if rows != record["rows"]:
            return f"{name} holds {rows} rows, {record['rows']} were written"
    extra = sorted(set(_part_names(root)) - set(files))
    return f"{extra[0]} was not written by ingest" if extra else None


def _rows_problem(files: dict, meta: dict) -> str | None:
    for split in SPLITS:
        prefix = f"{DATA_DIR}/split={split}/"
        found = sum(r["rows"] for name, r in files.items() if name.startswith(prefix))
        expected = int(meta["row_counts"].get(split, 0))
        if found != expected:
            return f"split {split!r} has {found} rows, {META_FILE} says {expected}"
    return None


def _part_names(root: Path) -> list[str]:
    """The Parquet parts of every split, as paths relative to ``root``."""
    return [p.relative_to(root).as_posix() for split in SPLITS for p in split_files(root, split)]


def _footer_rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows
