"""Where a dataset folder keeps its pieces; shared by the writer and the reader."""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "val", "test")
# Names (case-insensitive) by which a source's folders or files fix a split, and the split each
# one names: image folders' train/, val/, test/; Parquet files such as train-00000-of-00004.
SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
DATA_DIR = "data"
META_FILE = "meta.json"
X_COLUMN = "x"
Y_COLUMN = "y"
# Optional per-row ground truth over the pixels, e.g. a part label map (the parts source, and
# image folders with masks/).
MASK_COLUMN = "mask"
# Image datasets keep each file's encoded bytes and its path relative to the source root
# instead of ``x`` (decoding happens in the training workers; see components/data/images.py).
IMAGE_COLUMN = "image"
PATH_COLUMN = "path"

_PART_PREFIX = "part-"
_PART_SUFFIX = ".parquet"


def split_dir(root: str | Path, split: str) -> Path:
    """The hive-style folder holding one split's Parquet parts."""
    return Path(root) / DATA_DIR / f"split={split}"


def part_name(index: int) -> str:
    """File name of the ``index``-th part of a split."""
    return f"{_PART_PREFIX}{index:06d}{_PART_SUFFIX}"


def split_files(root: str | Path, split: str) -> list[Path]:
    """A split's part files in their stable row order (by part number, not by string)."""
    folder = split_dir(root, split)
    if not folder.is_dir():
        return []
    parts = folder.glob(f"{_PART_PREFIX}*{_PART_SUFFIX}")
    return sorted(parts, key=lambda p: int(p.name[len(_PART_PREFIX) : -len(_PART_SUFFIX)]))
