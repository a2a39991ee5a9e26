"""Replaying a learned hyperparameter schedule epoch by epoch, and the augmentations it drives.

A Self-Tuning Network (MacKay et al., ICLR 2019) learns its hyperparameters online, so what it
finds is a *schedule*: one value per epoch. The sweep's retrain replays it through the pipeline's
fit loop (``TrainConfig.hyper_schedule``): at the start of global epoch ``e`` the row for ``e``
(the last row once the schedule is shorter than the run) sets

* ``dropout``: the rate ``p`` of every ``nn.Dropout`` module of the model;
* ``weight_decay``: the optimiser's ``weight_decay`` in every parameter group (torch's
  convention: ``wd * w`` added to the gradient);
* ``brightness``, ``contrast``, ``saturation``, ``hue``, ``shift``, ``noise``: the strength of
  the per-example batch augmentations below, applied to that epoch's training batches.

The augmentations work on the normalised batch tensors the loaders yield (so the same code
serves arrays and decoded image folders, and the STN trial and the replay apply the very same
operation). Strength ``s`` with a per-example draw ``u ~ U(-1, 1)``:

* brightness: ``x + s * u`` (an offset in units of the per-channel std);
* contrast: ``m + (1 + s * u) * (x - m)``, ``m`` the image's mean over channels and pixels;
* saturation (RGB): ``g + (1 + s * u) * (x - g)``, ``g`` the per-pixel mean over channels;
* hue (RGB): each pixel's colour rotated about the grey axis ``(1, 1, 1)`` by ``pi * s * u``;
* shift: a random translation of at most ``round(s)`` pixels in each axis, zero filled;
* noise: ``x + s * N(0, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

AUGMENTATIONS = ("brightness", "contrast", "saturation", "hue", "shift", "noise")
COLOUR_ONLY = ("saturation", "hue")


def _per_example(strength: torch.Tensor | float, n: int, dims: int) -> torch.Tensor:
    s = torch.as_tensor(strength, dtype=torch.float32).expand(n) if n else torch.zeros(0)
    return s.reshape(n, *([1] * (dims - 1)))


def _uniform(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) * 2 - 1


def brightness(x: torch.Tensor, strength, u: torch.Tensor) -> torch.Tensor:
    """``x + strength * u`` per example (``u``: ``(N,)`` draws in ``[-1, 1]``)."""
    return x + _per_example(strength, len(x), x.dim()) * u.view(-1, *([1] * (x.dim() - 1)))


def contrast(x: torch.Tensor, strength, u: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviation from its mean by ``1 + strength * u``."""
    mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
    factor = 1 + _per_example(strength, len(x), x.dim()) * u.view(-1, *([1] * (x.dim() - 1)))
    return mean + factor * (x - mean)


def saturation(x: torch.Tensor, strength, u: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's deviation from its grey value (channel mean) by ``1 + strength * u``."""
    grey = x.mean(dim=1, keepdim=True)
    factor = 1 + _per_example(strength, len(x), x.dim()) * u.view(-1, *([1] * (x.dim() - 1)))
    return grey + factor * (x - grey)


def hue(x: torch.Tensor, strength, u: torch.Tensor) -> torch.Tensor:
    """Rotate each pixel's RGB vector about the grey axis by ``pi * strength * u`` (Rodrigues)."""
    angle = math.pi * _per_example(strength, len(x), 1).view(-1) * u
    cos, sin = torch.cos(angle), torch.sin(angle)
    k = torch.full((3,), 1 / math.sqrt(3.0))
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    outer = torch.outer(k, k)
    eye = torch.eye(3)
    rot = cos.view(-1, 1, 1) * eye + sin.view(-1, 1, 1) * cross + (1 - cos).view(-1, 1, 1) * outer
    return torch.einsum("nij,nj...->ni...", rot, x)


def shift(x: torch.Tensor, pixels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Translate each ``(C, H, W)`` image by a random offset of at most ``pixels[i]`` per axis."""
    n, _, height, width = x.shape
    pad = int(pixels.max().item()) if n else 0
    if pad == 0:
        return x
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    limit = pixels.to(torch.float32).unsqueeze(1)
    offsets = torch.round((torch.rand((n, 2), generator=generator) * 2 - 1) * limit).long()
    rows = (torch.arange(height) + pad).unsqueeze(0) + offsets[:, :1]
    cols = (torch.arange(width) + pad).unsqueeze(0) + offsets[:, 1:]
    batch = torch.arange(n)[:, None, None, None]
    channel = torch.arange(x.shape[1])[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def augment(
    x: torch.Tensor, strengths: Mapping[str, object], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply the augmentations named in ``strengths`` (each a float or an ``(N,)`` tensor).

    Colour augmentations need 3 channels and the shift needs ``(N, C, H, W)`` input; where the
    batch has another shape they are skipped, so one schedule serves every dataset.
    """
    n = len(x)
    rgb = x.dim() == 4 and x.shape[1] == 3
    for name, op in (("brightness", brightness), ("contrast", contrast)):
        if name in strengths:
            x = op(x, strengths[name], _uniform(n, generator))
    if rgb:
        for name, op in (("saturation", saturation), ("hue", hue)):
            if name in strengths:
                x = op(x, strengths[name], _uniform(n, generator))
    if "shift" in strengths and x.dim() == 4:
        pixels = torch.round(torch.as_tensor(strengths["shift"], dtype=torch.float32).expand(n))
        x = shift(x, pixels.long(), generator)
    if "noise" in strengths:
        std = _per_example(strengths["noise"], n, x.dim())
        x = x + std * torch.randn(x.shape, generator=generator)
    return x


def schedule_row(schedule: Sequence[Mapping], epoch: int) -> Mapping | None:
    """The row replayed at global epoch ``epoch`` (0-based): the last one past the end."""
    if not schedule:
        return None
    return schedule[min(epoch, len(schedule) - 1)]


class AugmentedBatches:
    """Training batches with one epoch's augmentation strengths applied to every ``x``."""

    def __init__(self, batches, strengths: Mapping[str, float], seed: int) -> None:
        self.batches, self.strengths, self.seed = batches, dict(strengths), seed

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        generator = torch.Generator().manual_seed(self.seed)
        for x, y, *ids in self.batches:  # sample ids pass through (PS-KD)
            yield augment(x, self.strengths, generator), y, *ids


def replayed_values(model: nn.Module, opt: torch.optim.Optimizer, schedule, epoch: int) -> dict:
    """What epoch ``epoch`` of a replayed schedule actually ran with, read back from the model's
    dropout layers and the optimiser (``replayed_*`` metrics; empty without a schedule)."""
    row = schedule_row(schedule, epoch)
    if row is None:
        return {}
    out = {"replayed_weight_decay": float(opt.param_groups[0]["weight_decay"])}
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    if rates:
        out["replayed_dropout"] = float(rates[0])
    out |= {f"replayed_{k}": float(row[k]) for k in AUGMENTATIONS if k in row}
    return out


def apply_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train_batches,
    schedule: Sequence[Mapping],
    epoch: int,
    seed: int,
):
    """Set global epoch ``epoch``'s dropout and weight decay; return its training batches.

    Without a schedule (the usual case) nothing changes and ``train_batches`` comes back.
    """
    row = schedule_row(schedule, epoch)
    if row is None:
        return train_batches
    if "dropout" in row:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = float(row["dropout"])
    if "weight_decay" in row:
        for group in opt.param_groups:
            group["weight_decay"] = float(row["weight_decay"])
    strengths = {k: float(row[k]) for k in AUGMENTATIONS if k in row}
    if not strengths:
        return train_batches
    return AugmentedBatches(train_batches, strengths, seed * 100_003 + epoch)
