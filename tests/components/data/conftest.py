"""Shared helpers for the image-source tests: small generated image folders and their ingest."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from components.data.ingest import ingest
from components.data.layout import SPLITS, split_files
from components.data.parts_folder import write_parts_folder
from components.data.spec import DataSpec

SIZE = 16


@pytest.fixture
def parts_folder(tmp_path):
    """``make(**kwargs)``: a folder of 16x16 ``parts`` images under ``tmp_path/images``."""

    def make(num_samples: int = 32, **kwargs) -> Path:
        return write_parts_folder(tmp_path / "images", num_samples=num_samples, size=SIZE, **kwargs)

    return make


@pytest.fixture
def ingest_folder(tmp_path):
    """``run(folder, **spec)``: ingest an image folder at 16x16 into ``tmp_path/cache``."""

    def run(folder: Path, progress=None, **spec):
        spec = {"image_size": SIZE, **spec}
        return ingest(
            DataSpec(source="image_folder", path=str(folder), **spec),
            tmp_path / "cache",
            progress=progress,
        )

    return run


def write_image(path: Path, pixels: np.ndarray, mode: str | None = None, **options) -> Path:
    """Save ``pixels`` (``(H, W, 3)`` or ``(H, W)`` uint8) as an image file, folders included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(path, **options)
    return path


def random_pixels(seed: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """Seeded random RGB pixels ``(H, W, 3)`` uint8."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def split_rows(dataset: Path, split: str) -> list[dict]:
    """Every row of a split (image bytes, path, y), in the split's order."""
    return [row for part in split_files(dataset, split) for row in pq.read_table(part).to_pylist()]


def all_rows(dataset: Path) -> dict[str, list[dict]]:
    """The rows of every split."""
    return {split: split_rows(dataset, split) for split in SPLITS}


def cache_is_clean(cache: Path) -> bool:
    """No dataset folder and no staging folder in ``cache`` (a failed ingest left nothing)."""
    return not cache.exists() or not any(cache.iterdir())


@pytest.fixture(scope="session")
def image_tools():
    """Helpers for image-source tests: ``write_image``, ``random_pixels``, ``split_rows``,
    ``all_rows`` and ``cache_is_clean``."""
    return SimpleNamespace(
        write_image=write_image,
        random_pixels=random_pixels,
        split_rows=split_rows,
        all_rows=all_rows,
        cache_is_clean=cache_is_clean,
    )
