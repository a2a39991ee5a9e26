"""Feature groups: the interpretable features of every removal-based explanation and metric.

A group label per input element; :mod:`components.perturbation.removal` removes whole groups,
explanation methods (:mod:`components.explain.posthoc`) attribute per group and the metrics
(:mod:`components.evaluation.faithfulness`) rank and remove groups, so all of them agree on
what one feature is.

Why groups: removing 50,176 pixels of a 224x224 image one by one, or
fitting a linear model over them, costs one model call per pixel; grouping them makes the cost
proportional to the number of groups. ``auto`` keeps one feature per pixel (across channels) on
images up to 16x16 and one per element on tabular inputs, and groups larger images into an 8x8
grid of patches (64 groups: 4x4 patches on 32x32 images, 28x28 on 224x224). ``superpixels``
segments each image with SLIC (Achanta et al. 2012, "SLIC Superpixels Compared to State-of-the-Art
Superpixel Methods"), as LIME does for images (Ribeiro et al. 2016), into about as many segments as
the patch grid has cells; the groups then differ from image to image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from components.tensors import as_float_tensor

FEATURE_GROUPS = ("auto", "none", "patches", "superpixels")
_AUTO_POSITIONS = 256  # auto keeps one feature per position up to 16x16 images (digits: 8x8)
_AUTO_GROUPS = 64  # above, about 64 groups: an 8x8 grid (4x4 patches on 32x32 `parts`)
# SLIC's colour-vs-space trade-off for per-image [0, 1]-scaled channels: higher values collapse
# onto the patch grid, much lower ones fragment noisy images into slivers that SLIC's
# connectivity step then merges into a single segment.
_SLIC_COMPACTNESS = 1.0


def auto_patch_size(feature_shape: Sequence[int]) -> int:
    """The patch side ``auto`` uses for ``(C, H, W)`` images or ``(C, L)`` signals.

    1 (one feature per position, across channels) up to 256 positions (16x16 images), else
    the side that cuts the positions into about 64 groups (an 8x8 grid; 64 segments of a signal).
    """
    spatial = tuple(int(s) for s in feature_shape)[1:]
    if math.prod(spatial) <= _AUTO_POSITIONS:
        return 1
    cells_per_axis = round(_AUTO_GROUPS ** (1 / len(spatial)))
    return math.ceil(max(spatial) / cells_per_axis)


def feature_groups(feature_shape: Sequence[int], patch_size: int | None = None) -> torch.Tensor:
    """Interpretable features shared by all inputs: a group label per element.

    Images ``(C, H, W)``: one group per ``patch_size`` x ``patch_size`` patch across channels;
    signals ``(C, L)``: one per ``patch_size`` segment across channels; ``patch_size`` defaults
    to :func:`auto_patch_size` (1 up to 16x16 images, an 8x8 grid above). Other shapes
    (tabular): one group per element.
    """
    shape = tuple(int(s) for s in feature_shape)
    if len(shape) not in (2, 3):
        if patch_size is not None:
            raise ValueError(f"patch_size applies to (C, H, W) or (C, L) inputs, got {shape}")
        return torch.arange(math.prod(shape)).reshape(shape)
    patch = auto_patch_size(shape) if patch_size is None else int(patch_size)
    if patch < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch}")
    spatial = shape[1:]
    labels = torch.zeros(spatial, dtype=torch.long)
    for axis, size in enumerate(spatial):
        view = [1] * len(spatial)
        view[axis] = size
        labels = labels * math.ceil(size / patch) + (torch.arange(size) // patch).reshape(view)
    return labels.expand(shape).clone()


def group_labels(
    x: Any,
    kind: str = "auto",
    patch_size: int | None = None,
    columns: Sequence[int] | None = None,
) -> torch.Tensor:
    """The interpretable features of each input of ``x`` as contiguous group labels.

    Args:
        x: Inputs ``(N, *shape)``.
        kind: One of :data:`FEATURE_GROUPS`: ``auto`` (:func:`feature_groups` with its default
            patch size: per feature on small inputs, an 8x8 grid on larger images; a table's
            ``columns`` where given), ``none`` (one group per element), ``patches``
            (:func:`feature_groups`; images and signals only) or ``superpixels``
            (:func:`superpixels`; images only).
        patch_size: Patch side for ``auto``/``patches``; for ``superpixels`` the segment count
            is the number of such patches. Default :func:`auto_patch_size`.
        columns: For flat (tabular) inputs, the source column of each feature
            (:func:`column_groups`): ``auto`` then removes a word column's 0/1 features
            together, as one feature, since removing one of them alone makes a row with two
            words or none.

    Returns:
        ``(1, *shape)`` labels shared by every input, or ``(N, *shape)`` (superpixels).

    Raises:
        ValueError: An unknown ``kind``, or patches / superpixels of inputs without positions.
    """
    inputs = as_float_tensor(x)
    shape = tuple(inputs.shape[1:])
    if kind not in FEATURE_GROUPS:
        raise ValueError(f"feature_groups must be one of {list(FEATURE_GROUPS)}, got {kind!r}")
    if kind == "none":
        return torch.arange(math.prod(shape)).reshape(1, *shape)
    if kind == "superpixels":
        return superpixels(inputs, patch_size)
    if kind == "patches" and len(shape) not in (2, 3):
        raise ValueError(f"patches need (C, H, W) images or (C, L) signals, got shape {shape}")
    if kind == "auto" and columns is not None and len(shape) == 1:
        if len(columns) != shape[0]:
            raise ValueError(f"columns names {len(columns)} features, the inputs have {shape[0]}")
        return torch.as_tensor(list(columns), dtype=torch.long).reshape(1, *shape)
    return feature_groups(shape, patch_size)[None]


def column_groups(
    feature_names: Sequence[str], categorical: Mapping[str, tuple[str, str]]
) -> list[int] | None:
    """The source column of each feature of a table, numbered in order: a word column's 0/1
    features (``column=word`` in ``categorical``) share their column's number. None when no
    feature is a word's (every feature is then its own column)."""
    if not any(name in categorical for name in feature_names):
        return None
    numbers: dict[str, int] = {}
    return [
        numbers.setdefault(categorical[n][0] if n in categorical else n, len(numbers))
        for n in feature_names
    ]


def superpixels(x: Any, patch_size: int | None = None) -> torch.Tensor:
    """SLIC superpixels of each image (Achanta et al. 2012), ``(N, C, H, W)`` labels.

    Each image's channels are scaled to [0, 1] (standardisation is affine per channel, so this
    undoes it up to the range) and segmented into about as many superpixels as the patch grid of
    ``patch_size`` has cells; labels are made contiguous per image.
    """
    from skimage.segmentation import slic  # only this grouping needs scikit-image

    inputs = as_float_tensor(x).detach().cpu()
    if inputs.dim() != 4:
        raise ValueError(f"superpixels need (N, C, H, W) images, got shape {tuple(inputs.shape)}")
    segments = int(feature_groups(inputs.shape[1:], patch_size).max()) + 1
    low = inputs.amin(dim=(2, 3), keepdim=True)
    scaled = (inputs - low) / (inputs.amax(dim=(2, 3), keepdim=True) - low).clamp(min=1e-12)
    labels = []
    for image in scaled.permute(0, 2, 3, 1).double().numpy():
        segmented = slic(
            image,
            n_segments=segments,
            compactness=_SLIC_COMPACTNESS,
            channel_axis=-1,
            convert2lab=False,
            start_label=0,
        )
        labels.append(np.unique(segmented, return_inverse=True)[1].reshape(segmented.shape))
    stacked = torch.as_tensor(np.stack(labels), dtype=torch.long)
    return stacked[:, None].expand(inputs.shape).clone()


def as_labels(
    feature_mask: Any,
    feature_shape: Sequence[int],
    patch_size: int | None = None,
    count: int | None = None,
) -> torch.Tensor:
    """``feature_mask`` as ``(1 or N, *feature_shape)`` labels ``0..G-1`` (contiguous per input).

    ``feature_mask`` holds an integer label per feature (any labels), broadcastable to
    ``feature_shape``, or one such mask per input with a leading dimension; None:
    :func:`feature_groups` with ``patch_size``. ``count`` (the number of inputs) checks a
    per-input mask's length.
    """
    shape = tuple(int(s) for s in feature_shape)
    if feature_mask is None:
        mask = feature_groups(shape, patch_size)[None]
    else:
        mask = torch.as_tensor(
            np.asarray(feature_mask.cpu() if torch.is_tensor(feature_mask) else feature_mask)
        ).long()
        if mask.dim() <= len(shape):
            mask = mask[None]
        try:
            mask = torch.broadcast_to(mask, (mask.shape[0], *shape))
        except RuntimeError as error:
            raise ValueError(
                f"feature_mask of shape {tuple(mask.shape)} does not broadcast to {shape}"
            ) from error
    if count is not None and len(mask) not in (1, count):
        raise ValueError(f"feature_mask has {len(mask)} masks for {count} inputs")
    flat = mask.reshape(len(mask), -1)
    if all(_is_contiguous(row) for row in flat):
        return mask
    return torch.stack([_relabel(row) for row in flat]).reshape(mask.shape)


def _is_contiguous(row: torch.Tensor) -> bool:
    """Whether ``row`` already uses every label ``0..max`` (a linear-time check: relabelling
    sorts, which costs more than scoring a sample on a 224x224 image)."""
    return bool(row.min() >= 0) and bool((torch.bincount(row) > 0).all())


def _relabel(row: torch.Tensor) -> torch.Tensor:
    return torch.unique(row, return_inverse=True)[1]


def num_groups(labels: torch.Tensor) -> int:
    """The number of groups of ``labels`` (the most any input has)."""
    return int(labels.max()) + 1 if labels.numel() else 0


def group_sums(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N, G)``: the sum of ``values`` ``(N, *shape)`` over each group of ``labels``."""
    flat = values.reshape(len(values), -1)
    index = labels.to(flat.device).reshape(len(labels), -1).expand(len(flat), -1)
    out = torch.zeros(len(flat), num_groups(labels), dtype=flat.dtype, device=flat.device)
    return out.scatter_add_(1, index, flat)


def expand_groups(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N, *shape)``: each element gets its group's value of ``values`` ``(N, G)``."""
    flat = labels.to(values.device).reshape(len(labels), -1)
    if len(flat) == 1:  # shared groups: one index for every row (faster than gather)
        return values.index_select(1, flat[0]).reshape(len(values), *labels.shape[1:])
    return values.gather(1, flat.expand(len(values), -1)).reshape(len(values), *labels.shape[1:])


def group_sizes(labels: torch.Tensor) -> torch.Tensor:
    """``(1 or N, G)``: how many elements each group of ``labels`` holds."""
    return group_sums(torch.ones(labels.shape), labels)


def spread_groups(coefficients: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N, *shape)``: each group's coefficient divided evenly among its elements."""
    sizes = group_sizes(labels).to(coefficients).clamp(min=1)
    return expand_groups(coefficients / sizes, labels)
