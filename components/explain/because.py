"""Why a prototype and an image look alike: "This Looks Like That, Because ... Explaining
Prototypes for Interpretable Image Recognition" (Nauta, Jutte, Provoost, Seifert; 2021).

For each prototype, the image is perturbed in one visual characteristic at a time (hue,
saturation, contrast, texture, shape) and the prototype's similarity is measured again at the
latent patch where it matched the original image best. The *local* importance of a
characteristic is the drop ``sim(original) - sim(perturbed)``; the *global* importance is its
mean over images weighted by ``sim(original)`` (the paper's global score), or the plain mean.

Perturbations act on the raw image rescaled to ``[0, 1]`` with the paper's strengths:

* hue: shift the HSV hue by 0.1 of a turn;
* saturation: blend with the greyscale image, factor 0.7;
* contrast: blend with the image's mean grey level, factor 0.45;
* texture: non-local-means denoising (the paper: OpenCV's ``fastNlMeansDenoisingColored`` with
  ``h = 4`` on 0-255, in CIELAB; here on RGB with ``h`` in ``[0, 1]`` units, 7x7 patches and a
  21x21 search window as in OpenCV). The default ``h = 0.1`` is stronger than the paper's
  ``4 / 255``, which leaves the small synthetic images almost untouched;
* shape: a sinusoidal warp that shifts rows horizontally and then columns vertically by
  ``A sin(2 pi t / T)`` (the paper: ``A = 4``, ``T = 40`` pixels of a 224 image; here scaled to
  the image size, with sub-pixel bilinear sampling instead of integer rolls).

Hue and saturation exist only for RGB (3-channel) inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from components.evaluation.predict import eval_mode
from components.models.base import PrototypeModel
from components.tensors import as_float_tensor, model_device

CHARACTERISTICS = ("hue", "saturation", "contrast", "texture", "shape")
COLOUR_CHARACTERISTICS = ("hue", "saturation")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 grey, as torchvision's ColorJitter uses


@dataclass(frozen=True)
class Perturbations:
    """Strength of each perturbation; defaults are the paper's (see the module docstring).

    Attributes:
        hue_shift: Fraction of a turn added to the HSV hue.
        saturation: Blend factor towards greyscale (1 keeps the image).
        contrast: Blend factor towards the mean grey level (1 keeps the image).
        texture_h: Non-local-means filtering strength in ``[0, 1]`` intensity units.
        texture_patch: Side of the compared patches (odd).
        texture_window: Side of the search window (odd).
        shape_amplitude: Warp amplitude as a fraction of the image side.
        shape_period: Warp period as a fraction of the image side.
    """

    hue_shift: float = 0.1
    saturation: float = 0.7
    contrast: float = 0.45
    texture_h: float = 0.1
    texture_patch: int = 7
    texture_window: int = 21
    shape_amplitude: float = 4 / 224
    shape_period: float = 40 / 224


def perturb(images: torch.Tensor, characteristic: str, strengths: Perturbations) -> torch.Tensor:
    """Perturb ``images`` ``(N, C, H, W)`` with values in ``[0, 1]`` in one characteristic.

    Raises:
        ValueError: Unknown characteristic, or a colour one for non-RGB images.
    """
    if characteristic not in CHARACTERISTICS:
        raise ValueError(f"unknown characteristic {characteristic!r}; one of {CHARACTERISTICS}")
    if characteristic in COLOUR_CHARACTERISTICS and images.shape[1] != 3:
        raise ValueError(f"{characteristic} needs RGB images, got {images.shape[1]} channels")
    operations: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "hue": lambda im: shift_hue(im, strengths.hue_shift),
        "saturation": lambda im: _blend(im, _grey(im), strengths.saturation),
        "contrast": lambda im: _blend(
            im, _grey(im).mean((1, 2, 3), keepdim=True), strengths.contrast
        ),
        "texture": lambda im: non_local_means(
            im, strengths.texture_h, strengths.texture_patch, strengths.texture_window
        ),
        "shape": lambda im: sine_warp(im, strengths.shape_amplitude, strengths.shape_period),
    }
    return operations[characteristic](images).clamp(0.0, 1.0)


def characteristic_importance(
    model: PrototypeModel,
    x: Any,
    mean: Any,
    std: Any,
    *,
    pixel_range: tuple[float, float] = (0.0, 1.0),
    strengths: Perturbations | None = None,
    weighted: bool = True,
    batch_size: int = 64,
) -> list[dict[str, float]]:
    """Global importance of each visual characteristic for each prototype (Nauta et al., 2021).

    Args:
        model: A part-prototype model with ``activation_maps(x) -> (N, P, h, w)`` similarities.
        x: Standardised inputs ``(N, C, H, W)``, as the model takes them.
        mean: The standardisation mean (per feature, per channel or scalar; broadcastable).
        std: The standardisation std, like ``mean``.
        pixel_range: Raw (unstandardised) values of black and white, e.g. ``(0, 16)`` for
            sklearn's digits; perturbations act on the raw image rescaled to ``[0, 1]``.
        strengths: Perturbation strengths; default: the paper's.
        weighted: Weight each image's drop by its original similarity (the paper's global
            score; needs non-negative similarities, as ProtoPNet's are) or average plainly.
        batch_size: Images per batch.

    Returns:
        One dict per prototype mapping each characteristic (colour ones only for RGB input)
        to its importance: the (weighted) mean drop in similarity; larger means the
        prototype relies more on it, negative means the perturbation raised the similarity.
    """
    strengths = strengths or Perturbations()
    inputs = as_float_tensor(x)
    names = [c for c in CHARACTERISTICS if inputs.shape[1] == 3 or c not in COLOUR_CHARACTERISTICS]
    scale = _Standardisation(mean, std, pixel_range, inputs.shape[1:])
    original, drops = [], {name: [] for name in names}
    with eval_mode(model), torch.no_grad():
        for batch in inputs.split(batch_size):
            sims, drop = _batch_drops(model, batch, scale, names, strengths)
            original.append(sims)
            for name in names:
                drops[name].append(drop[name])
    sims = torch.cat(original)
    weights = _weights(sims, weighted)
    table = {name: (torch.cat(drops[name]) * weights).sum(0) for name in names}
    return [{name: float(table[name][p]) for name in names} for p in range(sims.shape[1])]


def shift_hue(images: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the HSV hue of RGB ``images`` in ``[0, 1]`` by ``shift`` turns."""
    hue, saturation, value = _rgb_to_hsv(images)
    return _hsv_to_rgb(torch.remainder(hue + shift, 1.0), saturation, value)


def non_local_means(images: torch.Tensor, h: float, patch: int, window: int) -> torch.Tensor:
    """Non-local-means denoising (Buades et al., 2005) of ``images`` ``(N, C, H, W)``.

    Every pixel becomes a weighted mean of the pixels in its ``window``, weighted by
    ``exp(-d / h^2)`` where ``d`` is the mean squared difference of the ``patch`` around each.
    """
    reach = window // 2
    height, width = images.shape[2:]
    padded = F.pad(images, (reach,) * 4, mode="replicate")
    total = torch.zeros_like(images)
    weight_sum = torch.zeros_like(images[:, :1])
    for dy in range(window):
        for dx in range(window):
            other = padded[:, :, dy : dy + height, dx : dx + width]
            distance = ((images - other) ** 2).mean(1, keepdim=True)
            distance = F.avg_pool2d(distance, patch, stride=1, padding=patch // 2,
                                    count_include_pad=False)  # fmt: skip
            weight = torch.exp(-distance / h**2)
            total += weight * other
            weight_sum += weight
    return total / weight_sum


def sine_warp(images: torch.Tensor, amplitude: float, period: float) -> torch.Tensor:
    """Shift rows sideways, then columns vertically, by ``amplitude * sin(2 pi t / period)``.

    ``amplitude`` and ``period`` are fractions of the image side; ``t`` is the row's (then the
    column's) position, also as a fraction. Pixels are sampled bilinearly, mirrored at borders.
    """
    height, width = images.shape[2:]
    rows = _shifted_grid(height, width, amplitude, period, along_width=True)
    warped = F.grid_sample(images, rows.expand(len(images), -1, -1, -1), mode="bilinear",
                           padding_mode="reflection", align_corners=False)  # fmt: skip
    cols = _shifted_grid(height, width, amplitude, period, along_width=False)
    return F.grid_sample(warped, cols.expand(len(images), -1, -1, -1), mode="bilinear",
                         padding_mode="reflection", align_corners=False)  # fmt: skip


def _shifted_grid(
    height: int, width: int, amplitude: float, period: float, *, along_width: bool
) -> torch.Tensor:
    """A ``grid_sample`` grid ``(1, H, W, 2)`` that shifts rows (or columns) sinusoidally."""
    ys = (torch.arange(height) + 0.5) / height * 2 - 1
    xs = (torch.arange(width) + 0.5) / width * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    # Positions in [-1, 1] span 2 image sides: amplitude and phase are doubled accordingly.
    if along_width:
        grid_x = grid_x - 2 * amplitude * torch.sin(math.pi * (grid_y + 1) / period)
    else:
        grid_y = grid_y - 2 * amplitude * torch.sin(math.pi * (grid_x + 1) / period)
    return torch.stack([grid_x, grid_y], dim=-1)[None]


def _batch_drops(
    model: PrototypeModel,
    batch: torch.Tensor,
    scale: _Standardisation,
    names: list[str],
    strengths: Perturbations,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Original best similarities ``(B, P)`` and, per characteristic, the drops ``(B, P)``."""
    device = model_device(model)
    maps = model.activation_maps(batch.to(device)).flatten(2).float()
    best, where = maps.max(dim=2)
    images = scale.to_unit(batch)
    drops = {}
    for name in names:
        perturbed = scale.from_unit(perturb(images, name, strengths))
        again = model.activation_maps(perturbed.to(device)).flatten(2).float()
        drops[name] = (best - again.gather(2, where[:, :, None])[:, :, 0]).cpu()
    return best.cpu(), drops


def _weights(similarities: torch.Tensor, weighted: bool) -> torch.Tensor:
    """Per-image weights ``(N, P)`` summing to 1 over images for each prototype."""
    if not weighted:
        return torch.full_like(similarities, 1.0 / len(similarities))
    if (similarities < 0).any():
        raise ValueError(
            "weighted=True needs non-negative similarities (the paper's ProtoPNet log "
            "similarity); this model has negative ones: use weighted=False"
        )
    return similarities / similarities.sum(0).clamp(min=1e-12)


class _Standardisation:
    """Maps between standardised inputs and raw images rescaled to ``[0, 1]``."""

    def __init__(
        self, mean: Any, std: Any, pixel_range: tuple[float, float], shape: torch.Size
    ) -> None:
        self.mean = _broadcastable(mean, shape, "mean")
        self.std = _broadcastable(std, shape, "std")
        self.low, self.high = pixel_range
        if not self.high > self.low:
            raise ValueError(f"pixel_range must be (low, high) with high > low, got {pixel_range}")

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return ((x * self.std + self.mean) - self.low) / (self.high - self.low)

    def from_unit(self, images: torch.Tensor) -> torch.Tensor:
        return (images * (self.high - self.low) + self.low - self.mean) / self.std


def _broadcastable(values: Any, shape: torch.Size, name: str) -> torch.Tensor:
    """``values`` as a float tensor shaped to broadcast against one sample of ``shape``."""
    tensor = torch.as_tensor(np.asarray(values, dtype=np.float32))
    if tensor.numel() == math.prod(shape):
        return tensor.reshape(shape)
    if tensor.numel() == shape[0]:
        return tensor.reshape(-1, 1, 1)
    if tensor.numel() == 1:
        return tensor.reshape(())
    raise ValueError(
        f"{name} has {tensor.numel()} values; expected 1, {shape[0]} (per channel) or "
        f"{math.prod(shape)} (per feature)"
    )


def _grey(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    luma = torch.tensor(_LUMA, dtype=images.dtype, device=images.device)
    return (images * luma[:, None, None]).sum(1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return factor * images + (1.0 - factor) * other


def _rgb_to_hsv(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    red, green, blue = images.unbind(1)
    value, argmax = images.max(dim=1)
    chroma = value - images.min(dim=1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    sector = torch.stack(
        [((green - blue) / safe) % 6, (blue - red) / safe + 2, (red - green) / safe + 4]
    )
    hue = torch.where(chroma > 0, sector.gather(0, argmax[None])[0] / 6, torch.zeros_like(value))
    saturation = torch.where(value > 0, chroma / value.clamp(min=1e-12), torch.zeros_like(value))
    return hue, saturation, value


def _hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    # f(n) = V - V S max(0, min(k, 4 - k, 1)), k = (n + 6 H) mod 6, for n = 5, 3, 1 (R, G, B).
    channels = []
    for n in (5, 3, 1):
        k = torch.remainder(n + 6 * hue, 6)
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=1)
