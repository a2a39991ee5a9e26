"""The feature-removal operator every explanation metric (and Occlusion) uses.

Removing a feature means replacing its value by a reference: a baseline (zeros by default: the
inputs are standardised, so zero is the training mean), a per-feature mean, Gaussian noise, or a
blurred copy of the image. One operator, batched, so PGI/PGU, Fid, deletion/insertion curves and
Occlusion all remove features the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REPLACEMENTS = ("baseline", "mean", "noise", "blur")
# Bytes of input per batched model call on a GPU: 1,024 rows of digits or 32x32 images, about a
# hundred 224x224 RGB images, whose activations would otherwise take gigabytes per call.
CALL_BYTES = 64 * 2**20
# On a CPU far fewer: a conv net's activations then outgrow the caches, and a row cost 1.2-2x more
# in calls of hundreds of rows than of tens (ProtoPNet at 32, 64 and 224 px; BENCHMARKS.md).
CPU_CALL_BYTES = 2 * 2**20


def remove_features(
    x: torch.Tensor,
    mask: torch.Tensor,
    *,
    replacement: str = "baseline",
    baseline: torch.Tensor | float | None = None,
    mean: torch.Tensor | None = None,
    noise_std: float = 1.0,
    blur_sigma: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x`` with the features where ``mask`` is true (or 1) replaced.

    Args:
        x: ``(N, *shape)`` inputs.
        mask: broadcastable to ``x``; true / 1 marks a removed feature. A float mask in [0, 1]
            blends (``x * (1 - m) + reference * m``).
        replacement: ``baseline`` | ``mean`` | ``noise`` | ``blur``.
        baseline: ``baseline``'s reference: a scalar or a tensor broadcastable to ``x``
            (default 0).
        mean: ``mean``'s per-feature reference, broadcastable to ``x`` (default 0, the mean of
            standardised inputs).
        noise_std: ``noise``: std of the Gaussian drawn around 0 for each removed feature.
        blur_sigma: ``blur``: std in pixels of the Gaussian blur (image inputs ``(N, C, H, W)``).
        generator: seeds ``noise``.

    Returns:
        A new tensor shaped like ``x``.

    Raises:
        ValueError: on an unknown ``replacement`` or ``blur`` of non-image inputs.
    """
    mask = mask.to(device=x.device, dtype=x.dtype)
    reference = _reference(x, replacement, baseline, mean, noise_std, blur_sigma, generator)
    # x * (1 - mask) + reference * mask in one pass, exact for 0/1 masks: on 224x224 images the
    # memory traffic of the unfused form cost more than a small model's forward pass.
    return torch.lerp(x, reference, mask)


def _reference(x, replacement, baseline, mean, noise_std, blur_sigma, generator) -> torch.Tensor:
    if replacement == "baseline":
        return _broadcast(x, baseline)
    if replacement == "mean":
        return _broadcast(x, mean)
    if replacement == "noise":
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return noise.to(x.device) * noise_std
    if replacement == "blur":
        return gaussian_blur(x, blur_sigma)
    raise ValueError(f"replacement {replacement!r} is not one of {list(REPLACEMENTS)}")


def _broadcast(x: torch.Tensor, value: torch.Tensor | float | None) -> torch.Tensor:
    """``value`` (default 0) as a view shaped like ``x`` (no copy)."""
    value = torch.as_tensor(0.0 if value is None else value, dtype=x.dtype, device=x.device)
    return value.expand_as(x)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-channel Gaussian blur of ``(N, C, H, W)`` images (reflect padding)."""
    if x.dim() != 4:
        raise ValueError(
            f"blur removal needs image inputs (N, C, H, W), got shape {tuple(x.shape)}"
        )
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    channels = x.shape[1]
    pad = min(radius, x.shape[2] - 1, x.shape[3] - 1)
    kernel = kernel[radius - pad : radius + pad + 1]
    kernel = kernel / kernel.sum()  # after cropping to small images, so constants stay constant
    out = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad else x
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def top_k_mask(attributions: torch.Tensor, k: int, *, largest: bool = True) -> torch.Tensor:
    """Per sample, a 0/1 mask of the ``k`` features with the largest (or smallest) ``|attr|``.

    Ties are broken by feature order, so the mask is deterministic.
    """
    flat = attributions.reshape(len(attributions), -1).abs()
    if not 0 <= k <= flat.shape[1]:
        raise ValueError(f"k must lie in [0, {flat.shape[1]}], got {k}")
    order = torch.argsort(flat, dim=1, descending=largest, stable=True)[:, :k]
    mask = torch.zeros_like(flat).scatter_(1, order, 1.0)
    return mask.reshape(attributions.shape)


def rows_per_call(feature_shape, limit: int, device: torch.device | str = "cpu") -> int:
    """Rows of ``feature_shape`` (float32) per batched model call on ``device``: ``limit``, fewer
    for large inputs so one call holds at most :data:`CALL_BYTES` of input
    (:data:`CPU_CALL_BYTES` on a CPU)."""
    row_bytes = 4 * math.prod(int(s) for s in feature_shape)
    budget = CPU_CALL_BYTES if torch.device(device).type == "cpu" else CALL_BYTES
    return max(1, min(int(limit), budget // max(row_bytes, 1)))
