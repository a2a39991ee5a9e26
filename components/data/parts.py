"""The ``parts`` source: RGB images whose class is decided by the coloured parts they contain.

Every image holds the two parts of its class plus, independently with probability
``distractor_prob`` each, the distractor parts, which no class uses; parts are flat-coloured
shapes at random non-overlapping positions on textured grey noise. With ``C >= 3`` classes the
class parts are ``C`` core parts and class ``c`` is the pair ``(c, c+1 mod C)``, so every core
part belongs to two classes and only the *combination* of parts decides the class (two classes
use three core parts: ``(0, 1)`` and ``(1, 2)``). Since parts never overlap, one ``(H, W)``
uint8 label map per image (0 = background, ``k`` = ``parts[k-1]``) locates every part; it is
the ground truth for prototype consistency and stability (Huang et al., ICCV 2023).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter

from components.data.spec import DataSpec
from components.data.splits import check_class_counts, stratified_split
from components.data.stats import Moments
from components.data.validation import DROP_REASONS
from components.data.writer import build_meta, write_split

DEFAULT_IMAGE_SHAPE = (3, 32, 32)
NUM_DISTRACTORS = 2

_COLOURS = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.75, 0.15),
    "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.9, 0.1),
    "magenta": (0.9, 0.1, 0.9),
    "cyan": (0.1, 0.9, 0.9),
    "orange": (1.0, 0.5, 0.0),
    "white": (0.97, 0.97, 0.97),
}
_SHAPES = ("square", "disc", "triangle", "bar", "ring", "cross", "diamond", "frame")
# Part k of the vocabulary is (shape k, colour k): every part differs from every other in both.
VOCABULARY = tuple(f"{c}_{s}" for c, s in zip(_COLOURS, _SHAPES, strict=True))
_MIN_SIDE = 16
_GAP = 1  # background pixels kept between parts, so no two parts touch
_MAX_TRIES = 10_000
_CHUNK_ROWS = 1024


@dataclass(frozen=True)
class PartsTask:
    """Which parts exist and which of them make each class.

    Attributes:
        parts: Names of the parts (``"<colour>_<shape>"``); mask label ``k`` is ``parts[k-1]``.
        class_parts: Per class, the indices into ``parts`` of its (two) parts.
        distractors: Indices into ``parts`` of the parts that no class uses.
    """

    parts: tuple[str, ...]
    class_parts: tuple[tuple[int, ...], ...]
    distractors: tuple[int, ...]

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names such as ``"red_square+green_disc"``."""
        return tuple("+".join(self.parts[k] for k in ks) for ks in self.class_parts)

    def classify(self, present: np.ndarray) -> np.ndarray:
        """The class of each image from which parts it contains (the generator's rule).

        Args:
            present: bool ``(N, len(parts))``, whether each part occurs in each image.

        Returns:
            int64 ``(N,)`` class indices, ``-1`` where no class matches.
        """
        core = np.setdiff1d(np.arange(len(self.parts)), self.distractors)
        wanted = np.zeros((len(self.class_parts), len(self.parts)), bool)
        for c, ks in enumerate(self.class_parts):
            wanted[c, list(ks)] = True
        match = (present[:, None, core] == wanted[None, :, core]).all(axis=2)
        return np.where(match.any(axis=1), match.argmax(axis=1), -1).astype(np.int64)


@dataclass(frozen=True)
class PartsData:
    """A generated ``parts`` dataset held in memory.

    Attributes:
        x: float32 ``(N, 3, H, W)`` RGB images in ``[0, 1]``.
        y: int64 ``(N,)`` class indices, balanced across classes.
        masks: uint8 ``(N, H, W)`` part label maps (0 = background).
        task: The part vocabulary and class definitions.
    """

    x: np.ndarray
    y: np.ndarray
    masks: np.ndarray
    task: PartsTask


def parts_task(num_classes: int, num_distractors: int = NUM_DISTRACTORS) -> PartsTask:
    """The part vocabulary and class definitions for ``num_classes`` classes.

    Raises:
        ValueError: More parts are needed than the vocabulary of 8 holds.
    """
    num_core = max(num_classes, 3)
    if num_classes < 2 or num_distractors < 0 or num_core + num_distractors > len(VOCABULARY):
        raise ValueError(
            f"parts: {num_classes} classes and {num_distractors} distractors need "
            f"{num_core + num_distractors} parts; the vocabulary has {len(VOCABULARY)} "
            f"(at most {len(VOCABULARY) - num_distractors} classes)"
        )
    pairs = tuple(tuple(sorted((c, (c + 1) % num_core))) for c in range(num_classes))
    return PartsTask(
        parts=VOCABULARY[: num_core + num_distractors],
        class_parts=pairs,
        distractors=tuple(range(num_core, num_core + num_distractors)),
    )


def generate_parts(
    num_samples: int,
    num_classes: int,
    *,
    image_shape: tuple[int, ...] = DEFAULT_IMAGE_SHAPE,
    seed: int = 0,
    num_distractors: int = NUM_DISTRACTORS,
    distractor_prob: float = 0.5,
    part_size: int | None = None,
) -> PartsData:
    """Generate ``num_samples`` seeded images with balanced labels.

    Args:
        num_samples: Number of images.
        num_classes: Number of classes (2 to 6 with the default two distractors).
        image_shape: ``(3, H, W)`` with ``H, W >= 16``.
        seed: Seeds labels, layouts, colours and noise; equal seeds give equal data.
        num_distractors: Distractor parts in the vocabulary.
        distractor_prob: Chance that each distractor appears in an image.
        part_size: Side of a part's square box in pixels; default ``min(H, W) // 4``.

    Returns:
        Images, labels, label maps and the task.
    """
    task = parts_task(num_classes, num_distractors)
    height, width = _check_image_shape(image_shape)
    size = part_size or min(height, width) // 4
    _check_fits(size, 2 + num_distractors, height, width)
    stamps = np.stack([_stamp(name.split("_")[1], size) for name in task.parts])
    colours = np.array([_COLOURS[name.split("_")[0]] for name in task.parts], np.float32)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    y = rng.permutation(np.arange(num_samples) % num_classes).astype(np.int64)
    x = np.empty((num_samples, 3, height, width), np.float32)
    masks = np.zeros((num_samples, height, width), np.uint8)
    for start in range(0, num_samples, _CHUNK_ROWS):  # chunks bound the noise temporaries
        stop = min(start + _CHUNK_ROWS, num_samples)
        x[start:stop] = _background(rng, stop - start, height, width)
    for i, label in enumerate(y):
        extra = [k for k in task.distractors if rng.random() < distractor_prob]
        ids = np.array([*task.class_parts[label], *extra])
        corners = _place(rng, len(ids), size, height, width)
        _draw(x[i], masks[i], rng, ids, corners, stamps, colours)
    np.clip(x, 0.0, 1.0, out=x)
    return PartsData(x, y, masks, task)


def present_parts(masks: np.ndarray, num_parts: int) -> np.ndarray:
    """bool ``(N, num_parts)``: whether label ``k + 1`` occurs in each mask ``(N, H, W)``."""
    flat = masks.reshape(len(masks), -1)
    return np.stack([(flat == k + 1).any(axis=1) for k in range(num_parts)], axis=1)


def class_regions(masks: np.ndarray, y: np.ndarray, class_labels) -> np.ndarray:
    """The region that decides each image's class: bool ``(N, H, W)``, the pixels of the parts
    of its class, distractors excluded (the ground truth of segmentation from class evidence).

    Args:
        masks: Part label maps ``(N, H, W)``.
        y: The class of each image.
        class_labels: Per class, the mask labels of its parts (``k + 1`` for ``parts[k]``).
    """
    return np.stack([np.isin(m, class_labels[c]) for m, c in zip(masks, y, strict=True)])


def write_parts(spec: DataSpec, root: Path, fingerprint: str) -> dict:
    """Generate the ``parts`` dataset of ``spec``, split it and write it with its masks.

    The spec's ``feature_shape`` is the image shape (default ``(3, 32, 32)``); ``num_samples``,
    ``num_classes`` and ``seed`` are used as documented on :func:`generate_parts`.

    Returns:
        The dataset's meta, including ``parts`` (names, mask label ``k`` = ``parts[k-1]``),
        ``class_parts`` (part names per class) and ``mask_shape``.
    """
    shape = tuple(spec.feature_shape or DEFAULT_IMAGE_SHAPE)
    data = generate_parts(spec.num_samples, spec.num_classes, image_shape=shape, seed=spec.seed)
    names = data.task.class_names
    check_class_counts(data.y, names, spec.num_splits_needed, file=None, column=None)
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(1,)))
    rows = stratified_split(data.y, spec.val_fraction, spec.test_fraction, rng)
    flat = data.x.reshape(len(data.x), -1)
    for split, idx in rows.items():
        write_split(root, split, flat[idx], data.y[idx], spec.partition_rows, data.masks[idx])
    meta = build_meta(
        spec=spec,
        fingerprint=fingerprint,
        feature_shape=shape,
        class_names=names,
        train_moments=Moments.of_rows(flat[rows["train"]]),
        row_counts={split: len(idx) for split, idx in rows.items()},
        dropped_by_reason=dict.fromkeys(DROP_REASONS, 0),
    )
    meta["parts"] = list(data.task.parts)
    meta["class_parts"] = [[data.task.parts[k] for k in ks] for ks in data.task.class_parts]
    meta["mask_shape"] = list(shape[1:])
    return meta


def _check_image_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 3 or shape[0] != 3 or min(shape[1:]) < _MIN_SIDE:
        raise ValueError(
            f"parts: feature_shape must be (3, H, W) with H, W >= {_MIN_SIDE}, got {list(shape)}"
        )
    return int(shape[1]), int(shape[2])


def _check_fits(size: int, most_parts: int, height: int, width: int) -> None:
    """Require room for ``most_parts`` boxes on a grid, so rejection sampling ends quickly."""
    per_row = (width + _GAP) // (size + _GAP)
    per_col = (height + _GAP) // (size + _GAP)
    if size < 4 or per_row * per_col < 2 * most_parts:
        raise ValueError(
            f"parts: {most_parts} parts of {size}x{size} pixels do not fit a {height}x{width} "
            "image with room to spare"
        )


def _stamp(shape: str, size: int) -> np.ndarray:
    """A bool ``(size, size)`` silhouette, sampled at pixel centres of ``[-1, 1]^2``."""
    axis = (np.arange(size) + 0.5) / size * 2 - 1
    v, u = np.meshgrid(axis, axis, indexing="ij")  # v: down the rows, u: along them
    radius = np.hypot(u, v)
    inside = {
        "square": (abs(u) <= 0.8) & (abs(v) <= 0.8),
        "disc": radius <= 0.9,
        "triangle": (v <= 0.8) & (abs(u) <= (v + 1.0) / 1.8 * 0.95),
        "bar": (abs(u) <= 0.95) & (abs(v) <= 0.35),
        "ring": (radius <= 0.95) & (radius >= 0.5),
        "cross": ((abs(u) <= 0.3) | (abs(v) <= 0.3)) & (np.maximum(abs(u), abs(v)) <= 0.95),
        "diamond": abs(u) + abs(v) <= 1.0,
        "frame": (np.maximum(abs(u), abs(v)) <= 0.95) & (np.maximum(abs(u), abs(v)) >= 0.5),
    }[shape]
    return inside


def _background(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """Grey textured noise: a per-image level, smooth blotches and fine grain."""
    level = rng.uniform(0.35, 0.6, (n, 1, 1, 1)).astype(np.float32)
    blotches = uniform_filter(rng.standard_normal((n, 1, height, width), np.float32),
                              size=(1, 1, 3, 3), mode="wrap")  # fmt: skip
    grain = rng.standard_normal((n, 3, height, width), np.float32)
    # A 3x3 box filter shrinks unit noise to std 1/3; x3 makes the blotches' std 0.1.
    return level + 0.3 * blotches + 0.03 * grain


def _place(rng: np.random.Generator, count: int, size: int, height: int, width: int) -> np.ndarray:
    """Top-left corners ``(count, 2)`` of boxes at least ``_GAP`` pixels apart."""
    high = np.array([height - size + 1, width - size + 1])
    itself = np.eye(count, dtype=bool)
    for _ in range(_MAX_TRIES):
        corners = rng.integers(0, high, size=(count, 2))
        apart = np.abs(corners[:, None] - corners[None]).max(axis=2) >= size + _GAP
        if (apart | itself).all():
            return corners
    raise RuntimeError(f"parts: could not place {count} parts after {_MAX_TRIES} tries")


def _draw(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    ids: np.ndarray,
    corners: np.ndarray,
    stamps: np.ndarray,
    colours: np.ndarray,
) -> None:
    """Paint parts ``ids`` into ``image`` ``(3, H, W)`` and label them in ``mask`` in place."""
    size = stamps.shape[1]
    for k, (top, left) in zip(ids, corners, strict=True):
        inside = stamps[k]
        box = (slice(top, top + size), slice(left, left + size))
        shade = colours[k] * rng.uniform(0.9, 1.0)  # brightness varies, hue does not
        grain = 0.03 * rng.standard_normal((3, int(inside.sum())), np.float32)
        image[:, box[0], box[1]][:, inside] = shade[:, None] + grain
        mask[box][inside] = k + 1
