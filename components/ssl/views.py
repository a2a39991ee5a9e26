"""Two random views of a batch: the augmentations the joint-embedding objectives compare.

Images ``(N, C, H, W)``: a random resized crop and a horizontal flip per sample
(``torchvision.transforms.v2`` on tensors, as in Barlow Twins' pipeline minus blur and
solarisation, which mean little on 8x8 digits), then colour jitter of brightness and contrast.
The jitter is our own two lines rather than ``v2.ColorJitter`` because our images are already
standardised (mean 0, unit variance) and ``ColorJitter`` clamps float images to ``[0, 1]``.

Rows ``(N, D)`` (and signals ``(N, C, L)``): additive Gaussian noise and feature dropout (each
feature zeroed with probability ``feature_drop``, i.e. set to its standardised mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2


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
    steps = [v2.RandomResizedCrop(tuple(x.shape[-2:]), scale=(cfg.crop_scale, 1.0), antialias=True)]
    if cfg.flip:
        steps.append(v2.RandomHorizontalFlip())
    geometry = v2.Compose(steps)
    out = torch.stack([geometry(sample) for sample in x])  # v2 draws one crop per call
    n = len(x)
    shift = (torch.rand(n, 1, 1, 1) * 2 - 1) * cfg.jitter
    scale = 1 + (torch.rand(n, 1, 1, 1) * 2 - 1) * cfg.jitter
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * scale + mean + shift


def _row_view(x: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    keep = (torch.rand_like(x) >= cfg.feature_drop).to(x.dtype)
    return (x + cfg.noise_std * torch.randn_like(x)) * keep
