"""Two random views of a batch: the augmentations the joint-embedding objectives compare.

Images ``(N, C, H, W)``: a random resized crop (area share in ``[crop_scale, 1]``, aspect ratio
in ``[3/4, 4/3]``, resized back to ``H x W``: ``v2.RandomResizedCrop``'s sampling) and a
horizontal flip per sample, then colour jitter of brightness and contrast, as in Barlow Twins'
pipeline minus blur and solarisation (which mean little on 8x8 digits). Departures: the crop and
flip are one batched ``affine_grid``/``grid_sample`` (bilinear) rather than a ``torchvision
.transforms.v2`` call per sample, which draws one crop per call and cost most of an epoch in a
Python loop; the jitter is our own two lines rather than ``v2.ColorJitter`` because our images
are already standardised (mean 0, unit variance) and ``ColorJitter`` clamps floats to ``[0, 1]``.

Rows ``(N, D)`` (and signals ``(N, C, L)``): additive Gaussian noise and feature dropout (each
feature zeroed with probability ``feature_drop``, i.e. set to its standardised mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ViewConfig:
    """How strongly the views differ.

    Attributes:
        crop_scale: smallest share of the image area a crop keeps (the largest is 1).
        flip: flip images horizontally with probability 1/2.
        jitter: brightness shift and contrast factor drawn from ``[-jitter, jitter]`` and
            ``[1 - jitter, 1 + jitter]`` (standardised units).
        noise_std: rows: standard deviation of the added Gaussian noise.
        feature_drop: rows: probability of zeroing each feature.
    """

    crop_scale: float = 0.6
    flip: bool = True
    jitter: float = 0.4
    noise_std: float = 0.2
    feature_drop: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.crop_scale <= 1.0:
            raise ValueError(f"ViewConfig.crop_scale must be in (0, 1], got {self.crop_scale}")
        for name in ("jitter", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"ViewConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.feature_drop < 1.0:
            raise ValueError(f"ViewConfig.feature_drop must be in [0, 1), got {self.feature_drop}")


def augment(x: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """One random view of every sample of ``x`` (torch's global generator draws the randomness)."""
    return _image_view(x, cfg) if x.dim() == 4 else _row_view(x, cfg)


def _image_view(x: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    out = nn.functional.grid_sample(
        x, _crop_grid(x, cfg), mode="bilinear", padding_mode="border", align_corners=False
    )
    n = len(x)
    shift = (torch.rand(n, 1, 1, 1) * 2 - 1) * cfg.jitter
    scale = 1 + (torch.rand(n, 1, 1, 1) * 2 - 1) * cfg.jitter
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * scale + mean + shift


def _crop_grid(x: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """Sampling grids of one random resized crop (and flip) per sample, in ``[-1, 1]`` units."""
    n = len(x)
    area = cfg.crop_scale + torch.rand(n) * (1 - cfg.crop_scale)
    log_ratio = (torch.rand(n) * 2 - 1) * math.log(4 / 3)
    width = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)
    height = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    centre_x = (torch.rand(n) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(n) * 2 - 1) * (1 - height)
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    return nn.functional.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)


def _row_view(x: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    keep = (torch.rand_like(x) >= cfg.feature_drop).to(x.dtype)
    return (x + cfg.noise_std * torch.randn_like(x)) * keep
