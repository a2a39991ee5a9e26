"""Write generated ``parts`` images as an image folder: test data and benchmark input.

Each image is a file ``<class>/<index>.<ext>`` (or ``<split>/<class>/<index>.<ext>``) whose
class folder is the parts task's class name (e.g. ``red_square+green_disc``), so an ingest of
the folder must find the classes the generator drew. Images are generated in chunks of about
:data:`CHUNK_PIXELS` pixels (each chunk from its own seed), so memory stays small at 224x224
(about 150 MB per chunk) and chunks can be generated in parallel processes.

With ``masks=True`` each image also gets a mask ``masks/<same relative path>.png`` (the layout
:mod:`components.data.image_folder` ingests): 255 on the parts of the image's class, 0 on the
background and on distractor parts, the region the ``parts`` source's segmentation ground truth
uses (:func:`components.data.parts.class_regions`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from components.data.image_folder import MASKS_FOLDER
from components.data.parts import class_regions, generate_parts, parts_task
from components.data.splits import stratified_split

# Pillow format and file suffix of each accepted format name.
FORMATS = {"png": ("PNG", "png"), "jpeg": ("JPEG", "jpg"), "webp": ("WEBP", "webp"),
           "bmp": ("BMP", "bmp")}  # fmt: skip
LAYOUTS = ("class_folders", "split_folders")
CHUNK_PIXELS = 1 << 22
_QUALITY = 90  # JPEG and WebP


def write_parts_folder(
    root: str | Path,
    *,
    num_samples: int,
    num_classes: int = 4,
    size: int = 32,
    formats: Sequence[str] = ("png",),
    layout: str = "class_folders",
    seed: int = 0,
    val_fraction: float = 0.0,
    test_fraction: float = 0.2,
    workers: int = 1,
    masks: bool = False,
) -> Path:
    """Generate ``num_samples`` seeded ``parts`` images and write them as files under ``root``.

    Args:
        root: The folder to create (its parents too); it may exist.
        num_samples: Number of images (labels are balanced within each chunk).
        num_classes: Parts classes (2 to 6).
        size: Side of the square images (>= 16; 224 takes about 10 ms per image).
        formats: Formats cycled through by image index: ``png``, ``jpeg``, ``webp``, ``bmp``.
        layout: ``class_folders`` (``<class>/<file>``) or ``split_folders``
            (``train/<class>/<file>``, ``test/``, and ``val/`` when ``val_fraction > 0``).
        seed: Equal seeds give equal files.
        val_fraction: ``split_folders``: share of each class (per chunk) in ``val/``.
        test_fraction: ``split_folders``: share of each class (per chunk) in ``test/``.
        workers: Processes generating chunks in parallel (1: in this process).
        masks: Also write each image's class-part mask under ``masks/`` (see the module
            docstring).

    Returns:
        ``root`` as a ``Path``.

    Raises:
        ValueError: An unknown format or layout, or a size or class count parts cannot make.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats or layout not in LAYOUTS:
        raise ValueError(
            f"write_parts_folder: formats {list(formats)} (known: {sorted(FORMATS)}) and "
            f"layout {layout!r} (known: {LAYOUTS})"
        )
    root = Path(root)
    step = max(16, min(256, CHUNK_PIXELS // (size * size)))  # 256 images of 32x32, 83 of 224x224
    options = (num_classes, size, tuple(formats), layout, seed, val_fraction, test_fraction,
               masks)  # fmt: skip
    chunks = [(root, start, min(step, num_samples - start), *options)
              for start in range(0, num_samples, step)]  # fmt: skip
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # the caller may hold threads (torch)
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            list(pool.map(_write_chunk, *zip(*chunks, strict=True)))
    else:
        for chunk in chunks:
            _write_chunk(*chunk)
    return root


def chunk_seed(seed: int, start: int) -> int:
    """The :func:`~components.data.parts.generate_parts` seed of the chunk whose first image
    is number ``start``: images ``start, start + 1, ...`` are that call's rows in order."""
    return int(np.random.SeedSequence(seed, spawn_key=(start,)).generate_state(1)[0])


def _write_chunk(
    root: Path,
    start: int,
    count: int,
    num_classes: int,
    size: int,
    formats: tuple[str, ...],
    layout: str,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    masks: bool,
) -> None:
    own_seed = chunk_seed(seed, start)
    data = generate_parts(count, num_classes, image_shape=(3, size, size), seed=own_seed)
    names = parts_task(num_classes).class_names
    splits = _splits(data.y, layout, val_fraction, test_fraction, own_seed)
    pixels = (data.x * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    labels = [[k + 1 for k in ks] for ks in data.task.class_parts]
    regions = class_regions(data.masks, data.y, labels) if masks else [None] * count
    for i, (image, label, split) in enumerate(zip(pixels, data.y, splits, strict=True)):
        pil_format, suffix = FORMATS[formats[(start + i) % len(formats)]]
        rel = Path(split, names[label], f"{start + i:06d}")
        (root / rel.parent).mkdir(parents=True, exist_ok=True)
        options = {"quality": _QUALITY} if pil_format in ("JPEG", "WEBP") else {}
        Image.fromarray(image).save(root / f"{rel}.{suffix}", pil_format, **options)
        if regions[i] is not None:
            (root / MASKS_FOLDER / rel.parent).mkdir(parents=True, exist_ok=True)
            mask = Image.fromarray(regions[i].astype(np.uint8) * 255)
            mask.save(root / MASKS_FOLDER / f"{rel}.png", "PNG")


def _splits(
    y: np.ndarray, layout: str, val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """The split folder of each image (``""``: none, for ``class_folders``)."""
    if layout == "class_folders":
        return [""] * len(y)
    rows = stratified_split(y, val_fraction, test_fraction, np.random.default_rng(seed))
    splits = [""] * len(y)
    for split, idx in rows.items():
        for i in idx:
            splits[i] = split
    return splits
