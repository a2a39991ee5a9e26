"""Masks from thresholded unit maps, their Dice and IoU, and the threshold chosen on validation.

Maps are in ``[0, 1]`` (:func:`~components.explain.checks.segmentation.maps.unit_maps`); a pixel
is in the predicted mask when its value is above the threshold. Dice
``2|A n B| / (|A| + |B|)`` and IoU ``|A n B| / |A u B|`` are per image (1 when both masks are
empty), averaged over the images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from components.data.parts import class_regions


def threshold_grid(count: int) -> np.ndarray:
    """``count`` thresholds evenly inside ``(0, 1)``: ``k / (count + 1)``, ``k = 1..count``."""
    return np.arange(1, count + 1) / (count + 1)


def dice_iou(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU of boolean masks ``(..., N, H, W)`` against ``truth``
    ``(N, H, W)`` (leading dimensions, e.g. one per threshold, broadcast)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    inter = (predicted & truth).sum(axis=(-2, -1))
    size = predicted.sum(axis=(-2, -1)) + truth.sum(axis=(-2, -1))
    union = size - inter
    dice = np.where(size > 0, 2 * inter / np.maximum(size, 1), 1.0)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return dice, iou


def dice_by_threshold(maps: np.ndarray, truth: np.ndarray, thresholds: Sequence[float]):
    """Mean Dice over the images at each threshold, ``(T,)``."""
    masks = np.asarray(maps)[None] > np.asarray(thresholds)[:, None, None, None]
    return dice_iou(masks, truth)[0].mean(axis=1)


def choose_threshold(curve: np.ndarray, thresholds: Sequence[float]) -> float:
    """The threshold of the highest mean Dice (the lowest such threshold on a tie)."""
    return float(np.asarray(thresholds)[int(np.argmax(curve))])


def scores_at(maps: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    """Mean and median Dice and mean IoU of the masks ``maps > threshold``."""
    dice, iou = dice_iou(np.asarray(maps) > threshold, truth)
    return {
        "dice": float(dice.mean()),
        "dice_median": float(np.median(dice)),
        "iou": float(iou.mean()),
        "threshold": float(threshold),
    }


def object_masks(labels: np.ndarray, y: np.ndarray, meta_raw: dict) -> np.ndarray:
    """The region each image's class is decided by, bool ``(N, H, W)``.

    On ``parts`` (meta with ``parts`` and ``class_parts``) the pixels of the two parts of the
    image's class; distractor parts, which no class uses, are background, since no class
    evidence should point at them. On any other dataset with masks, every nonzero pixel.
    """
    labels = np.asarray(labels)
    if "parts" not in meta_raw or "class_parts" not in meta_raw:
        return labels > 0
    names = list(meta_raw["parts"])
    ids = [[names.index(part) + 1 for part in parts] for parts in meta_raw["class_parts"]]
    return class_regions(labels, y, ids)
