"""The datasets the bench scripts share, by name, and their train/val/test splits in memory.

Scripts run as ``python bench/<name>.py`` import it as a sibling module (``bench/`` is first on
``sys.path`` then): ``from bench_datasets import DATASETS, load_splits``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec

DATASETS = {
    "digits": DataSpec(source="digits"),
    "parts": DataSpec(source="parts", num_samples=3000, num_classes=4, feature_shape=(3, 32, 32)),
}


def load_splits(name: str) -> list:
    """Ingest dataset ``name`` in a temporary folder; its ``(x, y)`` train, val and test splits."""
    with tempfile.TemporaryDirectory() as tmp:
        dataset = ingest(DATASETS[name], Path(tmp))
        return [read_split(dataset.path, split) for split in ("train", "val", "test")]


def num_classes(splits) -> int:
    """How many classes the labels of the train split hold (labels are ``0..C-1``)."""
    return int(max(splits[0][1]) + 1)
