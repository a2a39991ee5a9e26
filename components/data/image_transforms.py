"""Image transforms (torchvision ``transforms.v2``) applied where images are decoded.

Every split is resized so its shorter side is ``size`` and centre-cropped to ``size x size``
(val, test, push and explain: deterministic). Training can add augmentation:

* ``none``: the deterministic transform;
* ``light``: random resized crop (60-100% of the area) and horizontal flip;
* ``protopnet``: ProtoPNet's augmentation (Chen et al., 2019, reference ``img_aug.py``):
  each training image gets one of rotation (up to 15 degrees), skew (perspective, magnitude
  0.2) or shear (up to 10 degrees), plus a horizontal flip with probability 0.5, on top of the
  random resized crop. The paper applies them offline (Augmentor, 30 copies per image, plus a
  random elastic distortion); here they are drawn online per epoch, which gives the same
  distribution of views without the 30x disk cost. The elastic distortion is left out: it is
  the slowest of the five and ProtoPNet's ablations do not single it out.

Pixels become float32 in ``[0, 1]`` and are standardised per channel with ``mean``/``std``.
Array datasets of images ``(C, H, W)`` (``parts``, ``digits`` reshaped) get the same random
steps on their stored, already standardised samples (:func:`tensor_augmentation`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from components.data.spec import AUGMENTATIONS

Transform = Callable[[torch.Tensor], torch.Tensor]


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> Transform:
    """Deterministic resize (shorter side) + centre crop + standardise, for uint8 ``(3, H, W)``."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            *_to_standardised(mean, std),
        ]
    )


def mask_transform(size: int) -> Transform:
    """The geometry of :func:`eval_transform` for a uint8 mask ``(H, W)``: nearest-neighbour
    resize of the shorter side to ``size``, then centre crop, so labels stay labels and every
    mask pixel stays on its image pixel."""
    from torchvision.transforms import InterpolationMode, v2

    steps = v2.Compose([v2.Resize(size, InterpolationMode.NEAREST), v2.CenterCrop(size)])
    return lambda mask: steps(mask[None])[0]


def train_transform(
    size: int, mean: Sequence[float], std: Sequence[float], augment: str
) -> Transform:
    """The training transform for ``augment`` (one of :data:`AUGMENTATIONS`).

    Raises:
        ValueError: ``augment`` is unknown.
    """
    from torchvision.transforms import v2

    if augment == "none":
        return eval_transform(size, mean, std)
    return v2.Compose([*_random_steps(size, augment), *_to_standardised(mean, std)])


def tensor_augmentation(size: tuple[int, int], augment: str) -> Transform | None:
    """The random part of :func:`train_transform` for one float ``(C, H, W)`` sample of an
    array dataset (already standardised; ``size``: its ``(H, W)``), ``None`` for ``none``.

    Raises:
        ValueError: ``augment`` is unknown.
    """
    if augment == "none":  # before importing torchvision: an array dataset may never need it
        return None
    from torchvision.transforms import v2

    return v2.Compose(_random_steps(size, augment))


def _random_steps(size, augment: str) -> list:
    from torchvision.transforms import v2

    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment={augment!r}: expected one of {AUGMENTATIONS}")
    steps = [v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True)]
    if augment == "protopnet":
        steps.append(
            v2.RandomChoice(
                [
                    v2.RandomRotation(15),
                    v2.RandomPerspective(distortion_scale=0.2, p=1.0),
                    v2.RandomAffine(degrees=0, shear=10),
                ]
            )
        )
    steps.append(v2.RandomHorizontalFlip())
    return steps


def _to_standardised(mean: Sequence[float], std: Sequence[float]) -> list:
    from torchvision.transforms import v2

    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([float(m) for m in mean], [float(s) for s in std]),
    ]
