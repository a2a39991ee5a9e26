"""How similar two attribution maps of the same inputs are, as Adebayo et al. (2018) measure it.

"Sanity Checks for Saliency Maps" (reference code: github.com/adebayoj/sanity_checks_saliency)
compares the explanation of a trained model with that of a randomised one by the Spearman rank
correlation of the absolute maps and by the structural similarity (SSIM) of the maps normalised
to [0, 1]. On images the map is the absolute attribution summed over the colour channels and
clipped at its 99th percentile (the reference code's ``VisualizeImageGrayscale``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from skimage.metrics import structural_similarity

SSIM_WINDOW = 7  # skimage's default window; smaller images get the largest odd side that fits


def is_image(feature_shape: Sequence[int]) -> bool:
    """Whether samples of ``feature_shape`` are ``(C, H, W)`` images (SSIM applies)."""
    return len(feature_shape) == 3


def absolute_maps(attributions: np.ndarray, *, image: bool) -> np.ndarray:
    """Absolute maps, one per sample: ``(N, H, W)`` for images (channels summed), ``(N, D)``
    otherwise."""
    a = np.abs(np.asarray(attributions, dtype=np.float64))
    return a.sum(axis=1) if image else a.reshape(len(a), -1)


def saliency_maps(attributions: np.ndarray, *, image: bool) -> np.ndarray:
    """:func:`absolute_maps` in [0, 1]: each divided by its 99th percentile and clipped at 1."""
    a = absolute_maps(attributions, image=image)
    flat = a.reshape(len(a), -1)
    scale = np.percentile(flat, 99, axis=1)
    scale = np.where(scale > 0, scale, flat.max(axis=1))
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(a / scale.reshape(-1, *([1] * (a.ndim - 1))), 0.0, 1.0)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample Spearman rank correlation of the flattened maps ``a`` and ``b`` ``(N, ...)``.

    A constant map carries no ranking: its correlation counts as 0 (no similarity).
    """
    ra = rankdata(np.asarray(a).reshape(len(a), -1), axis=1)
    rb = rankdata(np.asarray(b).reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    numerator = (ra * rb).sum(axis=1)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample SSIM of 2-D maps ``(N, H, W)`` in [0, 1] (:func:`saliency_maps`).

    An 8x8 digit gets a 7x7 window; SSIM on smaller maps is not defined (``ValueError``)."""
    window = min(SSIM_WINDOW, *a.shape[1:])
    window -= 1 - window % 2  # odd
    if window < 3:
        raise ValueError(f"SSIM needs maps of at least 3x3, got {a.shape[1:]}")
    return np.array(
        [
            structural_similarity(x, y, data_range=1.0, win_size=window)
            for x, y in zip(a, b, strict=True)
        ]
    )


def map_similarity(
    original: np.ndarray, other: np.ndarray, *, image: bool
) -> dict[str, np.ndarray]:
    """Per-sample similarity of two attributions of the same inputs: ``spearman`` of the
    absolute maps, and ``ssim`` of the normalised maps on images."""
    result = {
        "spearman": spearman(
            absolute_maps(original, image=image), absolute_maps(other, image=image)
        )
    }
    if image:
        result["ssim"] = ssim(
            saliency_maps(original, image=image), saliency_maps(other, image=image)
        )
    return result
