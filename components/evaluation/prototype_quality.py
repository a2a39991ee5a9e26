"""Prototype quality against ground-truth part masks: consistency and stability.

From "Evaluation and Improvement of Interpretability for Self-Explainable Part-Prototype
Networks" (Huang, Zhao, Wang, Zhou, Huang; ICCV 2023), adapted from part keypoints to part masks.
A prototype's activation map is upsampled bilinearly to the image size and its most activated
region is the box of ``half_size`` pixels on each side of the arg-max; by default the paper's
box scaled to the image (36 pixels of a 224 image: 5 of a 32 image), ``0`` is the arg-max pixel
alone. The region *hits* every part that has a pixel inside it (the paper: every part whose
keypoint lies in it); background hits nothing.

* **Consistency**: over the images of a prototype's class, the frequency with which its region
  hits part ``k`` among the images that contain ``k``; the prototype is consistent if some part
  reaches ``threshold`` (paper: 0.8). Score: the share of consistent prototypes.
* **Stability**: whether the *set* of parts hit stays the same when Gaussian noise of std
  ``noise_std`` (paper: 0.2, added to the normalised image) is added. Score: the share of
  stable (prototype, image) pairs. Comparing sets fixes the reference code, whose signed sum of
  differences calls a switch from one part to another "unchanged".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from components.evaluation.arrays import as_labels, as_numpy
from components.evaluation.predict import eval_mode
from components.models.base import PrototypeModel
from components.tensors import as_float_tensor, model_device

PAPER_THRESHOLD = 0.8
PAPER_NOISE_STD = 0.2
PAPER_HALF_SIZE = 36 / 224  # of the image side


def paper_half_size(height: int, width: int) -> int:
    """The paper's region half-size (36 pixels of a 224 image) for an image of this size."""
    return round(PAPER_HALF_SIZE * min(height, width))


def activated_parts(
    model: PrototypeModel,
    x: Any,
    masks: Any,
    *,
    half_size: int | None = None,
    num_parts: int | None = None,
    batch_size: int = 128,
) -> np.ndarray:
    """Which parts each prototype's most activated region covers in each image.

    Args:
        model: A part-prototype model with ``activation_maps(x) -> (N, P, h, w)``.
        x: Inputs ``(N, C, H, W)`` as the model takes them (standardised).
        masks: Label maps ``(N, H, W)``: 0 is background, ``k >= 1`` is part ``k``.
        half_size: Pixels on each side of the arg-max in the region; ``None``: the paper's
            (:func:`paper_half_size`).
        num_parts: Number of part labels ``K``; default: the largest label in ``masks``.
        batch_size: Images per forward pass.

    Returns:
        bool ``(N, P, K)``; ``[n, p, k]`` is whether prototype ``p``'s region in image ``n``
        covers part ``k + 1``.
    """
    inputs, labels = _check_inputs(x, masks)
    num_parts = int(labels.max(initial=0)) if num_parts is None else num_parts
    half_size = _half_size(half_size, labels)
    device = model_device(model)
    chunks = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size].to(device)
            maps = model.activation_maps(batch).float()
            rows = torch.from_numpy(labels[start : start + batch_size].astype(np.int64))
            chunks.append(_hits(maps, rows.to(device), half_size, num_parts).cpu())
    return torch.cat(chunks).numpy()


def consistency_score(
    model: PrototypeModel,
    x: Any,
    masks: Any,
    y: Any,
    *,
    threshold: float = PAPER_THRESHOLD,
    half_size: int | None = None,
    part_names: Sequence[str] | None = None,
    batch_size: int = 128,
) -> dict:
    """Share of prototypes that hit one part in at least ``threshold`` of their class's images.

    Args:
        model: A part-prototype model with ``activation_maps`` and ``prototype_classes()``.
        x: Test inputs ``(N, C, H, W)``, standardised as the model was trained.
        masks: Part label maps ``(N, H, W)`` (0 = background, ``k`` = ``part_names[k-1]``).
        y: Class labels ``(N,)``.
        threshold: Frequency a part must reach (paper: 0.8).
        half_size: Pixels on each side of the arg-max in the activated region; ``None``: the
            paper's (see the module docstring).
        part_names: Names of the part labels, e.g. the dataset meta's ``parts``.
        batch_size: Images per forward pass.

    Returns:
        ``{"score", "threshold", "half_size", "prototypes"}``: ``score`` in ``[0, 1]`` over the
        prototypes whose class has test images (``nan`` if none); ``prototypes`` lists, per
        prototype, its ``class``, ``images`` (test images of that class), ``part`` (the most
        often hit part's name, or label if unnamed; ``None`` if it hit none), ``frequency``,
        ``frequencies`` (per part label) and ``consistent``.
    """
    labels = as_labels(y, "y")
    half_size = _half_size(half_size, masks)
    num_parts = len(part_names) if part_names is not None else None
    hits = activated_parts(
        model, x, masks, half_size=half_size, num_parts=num_parts, batch_size=batch_size
    )
    present = _present(as_numpy(masks, "masks"), hits.shape[2])
    rows = [
        _consistency_row(p, c, hits[labels == c, p], present[labels == c], threshold, part_names)
        for p, c in enumerate(_prototype_classes(model, hits.shape[1]))
    ]
    judged = [r["consistent"] for r in rows if r["images"] > 0]
    return {
        "score": float(np.mean(judged)) if judged else float("nan"),
        "threshold": threshold,
        "half_size": half_size,
        "prototypes": rows,
    }


def stability_score(
    model: PrototypeModel,
    x: Any,
    masks: Any,
    noise_std: float = PAPER_NOISE_STD,
    seed: int = 0,
    *,
    y: Any = None,
    half_size: int | None = None,
    batch_size: int = 128,
) -> dict:
    """Share of (prototype, image) pairs whose set of hit parts survives Gaussian noise.

    Args:
        model: A part-prototype model with ``activation_maps`` (and ``prototype_classes()``
            when ``y`` is given).
        x: Inputs ``(N, C, H, W)`` in the model's (standardised) space; the noise is added there.
        masks: Part label maps ``(N, H, W)``.
        noise_std: Std of the i.i.d. Gaussian noise (paper: 0.2 on normalised images).
        seed: Seeds the noise.
        y: Optional labels ``(N,)``: if given, only pairs of a prototype with an image of its
            own class count, as in the paper; otherwise every pair counts.
        half_size: Pixels on each side of the arg-max in the activated region; ``None``: the
            paper's.
        batch_size: Images per forward pass.

    Returns:
        ``{"score", "noise_std", "seed", "half_size", "prototypes"}``: ``score`` in ``[0, 1]``
        (``nan`` without pairs); ``prototypes`` lists each prototype's ``stability`` over its
        ``images`` (``nan`` where it has none).
    """
    inputs = as_float_tensor(x)
    half_size = _half_size(half_size, masks)
    generator = torch.Generator().manual_seed(seed)
    noisy = inputs + noise_std * torch.randn(inputs.shape, generator=generator)
    num_parts = int(as_numpy(masks, "masks").max(initial=0))
    options = {"half_size": half_size, "num_parts": num_parts, "batch_size": batch_size}
    clean = activated_parts(model, inputs, masks, **options)
    perturbed = activated_parts(model, noisy, masks, **options)
    same = (clean == perturbed).all(axis=2)
    pairs = np.ones_like(same)
    if y is not None:
        classes = np.asarray(_prototype_classes(model, same.shape[1]))
        pairs = as_labels(y, "y")[:, None] == classes[None, :]
    per_prototype = [_mean(same[pairs[:, p], p]) for p in range(same.shape[1])]
    return {
        "score": _mean(same[pairs]),
        "noise_std": noise_std,
        "seed": seed,
        "half_size": half_size,
        "prototypes": [
            {"prototype": p, "stability": s, "images": int(pairs[:, p].sum())}
            for p, s in enumerate(per_prototype)
        ],
    }


def _hits(maps: torch.Tensor, labels: torch.Tensor, half_size: int, num_parts: int) -> torch.Tensor:
    """bool ``(B, P, K)`` from maps ``(B, P, h, w)`` and label maps ``(B, H, W)``.

    Per-part integral images give every box's pixel count of every part in one gather.
    """
    height, width = labels.shape[1:]
    up = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
    peak = up.flatten(2).argmax(dim=2)  # the first maximum, so ties break deterministically
    row, col = peak // width, peak % width
    top, bottom = (row - half_size).clamp(min=0), (row + half_size + 1).clamp(max=height)
    left, right = (col - half_size).clamp(min=0), (col + half_size + 1).clamp(max=width)
    parts = torch.arange(1, num_parts + 1, device=labels.device)
    onehot = (labels[:, None] == parts[None, :, None, None]).int()  # (B, K, H, W)
    integral = F.pad(onehot.cumsum(2).cumsum(3), (1, 0, 1, 0)).flatten(2)  # (B, K, (H+1)(W+1))

    def corner(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        index = (r * (width + 1) + c)[:, None, :].expand(-1, num_parts, -1)
        return integral.gather(2, index)  # (B, K, P)

    counts = corner(bottom, right) - corner(top, right) - corner(bottom, left) + corner(top, left)
    return (counts > 0).transpose(1, 2)


def _consistency_row(
    prototype: int,
    klass: int,
    hits: np.ndarray,
    present: np.ndarray,
    threshold: float,
    part_names: Sequence[str] | None,
) -> dict:
    """One prototype's consistency from its hits ``(n, K)`` in its class's ``n`` images."""
    # As in the reference code, a part absent from every image counts 0 hits out of 1.
    frequencies = hits.sum(axis=0) / np.maximum(present.sum(axis=0), 1)
    best = int(frequencies.argmax()) if frequencies.size else -1
    frequency = float(frequencies[best]) if best >= 0 else 0.0
    part = None
    if frequency > 0:
        part = part_names[best] if part_names is not None else best + 1
    return {
        "prototype": prototype,
        "class": klass,
        "images": len(hits),
        "part": part,
        "frequency": frequency,
        "frequencies": frequencies.tolist(),
        "consistent": bool(len(hits) > 0 and frequency >= threshold),
    }


def _check_inputs(x: Any, masks: Any) -> tuple[torch.Tensor, np.ndarray]:
    inputs = as_float_tensor(x)
    labels = as_numpy(masks, "masks")
    if inputs.ndim != 4 or labels.shape != (len(inputs), *inputs.shape[2:]):
        raise ValueError(
            f"x must be (N, C, H, W) and masks (N, H, W) of the same N, H, W; got "
            f"{tuple(inputs.shape)} and {labels.shape}"
        )
    if not len(inputs):
        raise ValueError("x: got zero samples")
    return inputs, labels


def _present(masks: np.ndarray, num_parts: int) -> np.ndarray:
    """bool ``(N, K)``: whether part ``k + 1`` occurs in each label map."""
    flat = masks.reshape(len(masks), -1)
    if num_parts == 0:
        return np.zeros((len(masks), 0), bool)
    return np.stack([(flat == k + 1).any(axis=1) for k in range(num_parts)], axis=1)


def _prototype_classes(model: PrototypeModel, num_prototypes: int) -> list[int]:
    if not hasattr(model, "prototype_classes"):
        raise TypeError(f"{type(model).__name__} has no prototype_classes(); cannot judge by class")
    classes = [int(c) for c in model.prototype_classes().detach().cpu().tolist()]
    if len(classes) != num_prototypes:
        raise ValueError(f"{len(classes)} prototype classes for {num_prototypes} activation maps")
    return classes


def _half_size(half_size: int | None, masks: Any) -> int:
    if half_size is not None:
        return half_size
    return paper_half_size(*as_numpy(masks, "masks").shape[1:3])


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")
