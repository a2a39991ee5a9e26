"""Where prototypes live on inputs: the pushed gallery and the regions of "this looks like that".

After ProtoPNet's push every prototype *is* a latent patch of one training sample, so the honest
picture of a prototype is that sample with the region the prototype stands for marked. The region
follows ProtoPNet (Chen et al., 2019, sec. 2.3; the reference code's ``find_high_activation_crop``):
the prototype's similarity map over the latent grid is upsampled to the input size (bicubic) and
the region is the bounding box of the pixels at or above its 95th percentile. Unlike the grid
cell under the best patch, this holds for any trunk, including ImageNet trunks whose receptive
fields cover the whole image. The same rule marks, on a test input, the region that looks like a
prototype. Inputs ``(C, L)`` (signals) have ``(1, l)`` maps and get a segment ``(0, left, 1,
width)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from components.evaluation.predict import eval_mode
from components.tensors import as_float_tensor

HIGH_ACTIVATION_PERCENTILE = 95.0  # ProtoPNet's crop threshold
_BATCH = 64  # inputs per activation_maps call: bounds the (n, P, h, w) maps held at once


def is_pushed(model) -> bool:
    """Whether the model records push provenance and every active prototype was pushed."""
    pushed = getattr(model, "pushed", None)
    return isinstance(pushed, torch.Tensor) and bool(pushed.all())


def input_size(input_shape: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of an image ``(C, H, W)``, ``(1, L)`` of a signal ``(C, L)``."""
    if len(input_shape) == 3:
        return int(input_shape[1]), int(input_shape[2])
    if len(input_shape) == 2:
        return 1, int(input_shape[1])
    raise ValueError(f"regions need image (C, H, W) or signal (C, L) inputs, got {input_shape}")


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling of similarity maps ``(n, h, w)`` to ``(n, *size)`` (input pixels)."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bicubic", align_corners=False)[
        :, 0
    ]


def high_activation_boxes(
    maps: torch.Tensor, size: tuple[int, int], percentile: float = HIGH_ACTIVATION_PERCENTILE
) -> list[tuple[int, int, int, int]]:
    """The region of each similarity map: the box around its upsampled high-activation pixels.

    Args:
        maps: ``(n, h, w)`` similarity maps over the latent grid.
        size: ``(H, W)`` of the input the maps are upsampled to.
        percentile: pixels at or above this percentile of the upsampled map are in the region.

    Returns:
        One ``(top, left, height, width)`` per map, in input pixels, inside ``(0, 0, H, W)``.
    """
    upsampled = upsample_maps(maps.detach(), size).cpu().numpy().reshape(len(maps), -1)
    threshold = np.percentile(upsampled, percentile, axis=1)
    hot = (upsampled >= threshold[:, None]).reshape(len(maps), *size)
    return [_bounding_box(mask) for mask in hot]


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, left = int(rows[0]), int(cols[0])
    return top, left, int(rows[-1]) + 1 - top, int(cols[-1]) + 1 - left


def _pair_maps(model, inputs: torch.Tensor, rows: np.ndarray, prototypes: np.ndarray):
    """``maps[i]``: similarity map ``(h, w)`` of prototype ``prototypes[i]`` on
    ``inputs[rows[i]]``; each input is encoded once, ``_BATCH`` at a time."""
    maps: list[torch.Tensor | None] = [None] * len(rows)
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(inputs), _BATCH):
            batch = model.activation_maps(inputs[start : start + _BATCH]).cpu()
            for i in np.flatnonzero((rows >= start) & (rows < start + _BATCH)):
                maps[i] = batch[rows[i] - start, prototypes[i]]
    return torch.stack(maps).float()


def pushed_gallery(model, source_images: np.ndarray) -> dict:
    """Source training image, similarity map, region and class of every prototype.

    Args:
        model: a pushed part-prototype model (``push_sample``, ``push_location`` buffers and
            ``activation_maps``).
        source_images: the training sample each prototype was pushed onto, in prototype order
            (``read_rows(dataset, "train", model.push_sample)``), standardised as the model
            sees it.

    Returns:
        ``images`` ``(P, *input_shape)``, ``samples`` (training row of each), ``maps`` ``(P, h,
        w)`` (each prototype's similarity on its source image), ``boxes`` (its region,
        ``top, left, height, width`` in input pixels, see :func:`high_activation_boxes`) and
        ``classes``.
    """
    images = np.asarray(source_images, dtype=np.float32)
    samples = model.push_sample.cpu().numpy()
    # several prototypes are often pushed onto one image: encode each image once
    _, first, row_of = np.unique(samples, return_index=True, return_inverse=True)
    maps = _pair_maps(model, torch.as_tensor(images[first]), row_of, np.arange(len(images)))
    return {
        "images": images,
        "samples": samples.tolist(),
        "maps": maps.numpy(),
        "boxes": high_activation_boxes(maps, input_size(images.shape[1:])),
        "classes": model.prototype_classes().cpu().tolist(),
    }


def add_sample_regions(model, inputs, samples: Sequence[dict]) -> None:
    """Add to each listed prototype of each sample the ``box`` of the region that looks like it.

    Args:
        model: a part-prototype model (``activation_maps``).
        inputs: the samples' inputs ``(N, *input_shape)``, standardised as the model sees them.
        samples: :func:`~components.explain.prototypes.explain_samples`' dicts, one per input;
            each ``prototypes`` entry gets ``box`` (``top, left, height, width``), the
            high-activation region of that prototype's similarity map on the input.
    """
    pairs = [(i, p["index"]) for i, sample in enumerate(samples) for p in sample["prototypes"]]
    if not pairs:
        return
    x = as_float_tensor(inputs)
    rows, prototypes = (np.asarray(v) for v in zip(*pairs, strict=True))
    maps = _pair_maps(model, x, rows, prototypes)
    boxes = iter(high_activation_boxes(maps, input_size(x.shape[1:])))
    for sample in samples:
        for proto in sample["prototypes"]:
            proto["box"] = list(next(boxes))
