"""HaloNet trunks: blocked local self-attention with halos (Vaswani et al., CVPR 2021,
"Scaling Local Self-Attention for Parameter Efficient Visual Backbones").

Blocked local self-attention (paper Sec. 2.2): the feature map is cut into non-overlapping
``b x b`` query blocks; each block attends to the ``(b + 2h) x (b + 2h)`` window made of the
block and a halo of ``h`` pixels around it, so neighbouring queries share one gathered window
instead of each extracting its own (SASA). Logits are ``q.k + q.r_dy + q.r_dx`` with factorised
relative position embeddings (one table per axis, as the paper takes from Bello et al. 2019),
``q`` scaled by ``d^-1/2``; several heads, each on its own slice of channels. Strided
self-attentive downsampling (paper Sec. 2.3): with ``stride 2`` each block keeps every other
query and still attends to its whole haloed window. Windows beyond the image are zero-padded
and **not masked** (the paper found the unmasked version more accurate); a map whose size is
not a multiple of ``b`` is zero-padded at the bottom/right the same way and cropped back.

The HaloNet block is a ResNet bottleneck whose 3x3 conv is the attention layer
(``1x1 conv -> BN -> ReLU -> attention -> BN -> ReLU -> 1x1 conv -> BN``, plus the shortcut,
then ReLU). The paper's H0-H7 put a ResNet stem (7x7 conv stride 2 + max-pool) before four such
stages with b = 8, h = 3 (H0: about 5.5M parameters, 77.9% ImageNet top-1 at 256 px). Sized
for 2 CPU cores and 32-px images here, departing from the paper: a 3x3 stride-2 conv stem (no
max-pool, so a 32-px image keeps an 8x8 latent grid), two or three stages, no final 1x1
expansion conv before pooling, smaller blocks in ``halonet_tiny`` (b = 4, h = 2); from scratch
only (no pretrained HaloNet weights exist in the torchvision format this project loads).

:func:`HaloAttention.global_attention` computes the same layer as naive global attention over
every pixel of the padded map, optionally masked to each query's block + halo neighbourhood:
masked, it equals the blocked layer (the defining invariant, tested); unmasked, it is the
quadratic-memory baseline of ``bench/halonet.py`` (relative offsets beyond the tables are
clipped to the table's ends, as in Shaw et al. 2018).

Reference code read: timm's ``timm/layers/halo_attn.py`` (Wightman); this implementation is
our own (explicit index tables for the relative logits instead of the pad-and-reshape trick).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

IMPLEMENTATIONS = ("blocked", "global", "global_masked")


@dataclass(frozen=True)
class HaloNetSpec:
    """Architecture of a HaloNet trunk.

    Attributes:
        stem_channels: output channels of the 3x3 stride-2 conv stem.
        widths: output channels of each stage.
        depths: HaloNet blocks in each stage.
        strides: stride of each stage's first block (1 or 2).
        block_size: query block size ``b``.
        halo_size: halo ``h`` around each block.
        heads: attention heads.
        bottleneck_ratio: a block's inner (attention) width as a share of its output width
            (ResNet's bottleneck: 0.25).
    """

    stem_channels: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    strides: tuple[int, ...]
    block_size: int
    halo_size: int
    heads: int
    bottleneck_ratio: float

    def __post_init__(self) -> None:
        if not len(self.widths) == len(self.depths) == len(self.strides):
            raise ValueError("HaloNetSpec: widths, depths and strides need one entry per stage")
        if any(s not in (1, 2) or self.block_size % s for s in self.strides):
            raise ValueError(
                f"HaloNetSpec: strides must be 1 or 2 and divide block_size, got {self.strides}"
            )
        for width in self.widths:
            if int(width * self.bottleneck_ratio) % self.heads:
                raise ValueError(
                    f"HaloNetSpec: inner width of {width} not divisible by {self.heads} heads"
                )


HALONET_SPECS = {
    "halonet_tiny": HaloNetSpec(
        stem_channels=24,
        widths=(64, 128),
        depths=(1, 1),
        strides=(1, 2),
        block_size=4,
        halo_size=2,
        heads=2,
        bottleneck_ratio=0.5,
    ),
    "halonet_small": HaloNetSpec(
        stem_channels=32,
        widths=(128, 256, 512),
        depths=(1, 1, 1),
        strides=(1, 2, 1),
        block_size=8,
        halo_size=3,
        heads=4,
        bottleneck_ratio=0.25,
    ),
}
HALONET_TRUNKS = tuple(HALONET_SPECS)


class HaloAttention(nn.Module):
    """Multi-head blocked local self-attention with halos and relative position logits.

    Args:
        channels: input channels; also the output channels (value width).
        heads: attention heads (``channels`` must divide by it).
        block_size: query block size ``b``.
        halo_size: halo ``h``: each block attends to its ``(b + 2h)^2`` window.
        stride: 1, or 2 to keep every other query of each block (``b`` must be even).

    Attributes:
        implementation: ``blocked`` (the paper's), ``global`` (naive global attention, the
            benchmark's baseline) or ``global_masked`` (global, masked to block + halo).
    """

    def __init__(
        self, channels: int, *, heads: int, block_size: int, halo_size: int, stride: int = 1
    ) -> None:
        super().__init__()
        if channels % heads or block_size % stride or block_size < 1 or halo_size < 0:
            raise ValueError(
                f"HaloAttention: channels {channels} must divide by heads {heads}, block_size "
                f"{block_size} by stride {stride}; halo_size {halo_size} must be >= 0"
            )
        self.heads, self.head_dim = heads, channels // heads
        self.block_size, self.halo_size, self.stride = block_size, halo_size, stride
        self.implementation = "blocked"
        self.query = nn.Conv2d(channels, channels, 1, bias=False)
        self.key = nn.Conv2d(channels, channels, 1, bias=False)
        self.value = nn.Conv2d(channels, channels, 1, bias=False)
        span = 2 * (block_size + halo_size) - 1  # offsets -(b+h-1) .. b+h-1
        self.rel_height = nn.Parameter(torch.randn(span, self.head_dim) * self.head_dim**-0.5)
        self.rel_width = nn.Parameter(torch.randn(span, self.head_dim) * self.head_dim**-0.5)
        rows, cols = block_offsets(block_size, halo_size, stride)
        self.register_buffer("rel_rows", rows, persistent=False)
        self.register_buffer("rel_cols", cols, persistent=False)

    @property
    def window(self) -> int:
        """Side of the haloed window each block attends to, ``b + 2h``."""
        return self.block_size + 2 * self.halo_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.implementation == "blocked":
            return self.blocked(x)
        return self.global_attention(x, masked=self.implementation == "global_masked")

    def blocked(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's blocked local self-attention of ``x`` ``(N, C, H, W)``."""
        n, _, height, width = x.shape
        b, h, s = self.block_size, self.halo_size, self.stride
        x = F.pad(x, (0, -width % b, 0, -height % b))
        rows, cols = x.shape[2] // b, x.shape[3] // b
        side, win, nh = b // s, self.window, n * self.heads
        q = self.query(x)[:, :, ::s, ::s] * self.head_dim**-0.5
        q = q.reshape(nh, self.head_dim, rows, side, cols, side).permute(0, 2, 4, 3, 5, 1)
        q = q.reshape(nh, rows * cols, side * side, self.head_dim)
        haloed = F.pad(x, (h, h, h, h))
        k, v = (self._windows(proj(haloed), win, rows * cols) for proj in (self.key, self.value))
        logits = q @ k.transpose(-1, -2) + self._relative(q, self.rel_rows, self.rel_cols)
        out = logits.softmax(dim=-1) @ v  # (nh, blocks, side^2, d)
        out = out.reshape(n, self.heads, rows, cols, side, side, self.head_dim)
        out = out.permute(0, 1, 6, 2, 4, 3, 5).reshape(n, -1, rows * side, cols * side)
        return out[:, :, : math.ceil(height / s), : math.ceil(width / s)]

    def global_attention(self, x: torch.Tensor, *, masked: bool) -> torch.Tensor:
        """The same layer as naive global attention: every query of the padded map attends to
        every pixel of it (``masked``: only to its block + halo window)."""
        n, _, height, width = x.shape
        b, h, s, nh = self.block_size, self.halo_size, self.stride, n * self.heads
        x = F.pad(x, (h, h + (-width % b), h, h + (-height % b)))
        size_h, size_w = x.shape[2] - 2 * h, x.shape[3] - 2 * h
        q = self.query(x)[:, :, h : h + size_h : s, h : h + size_w : s] * self.head_dim**-0.5
        out_h, out_w = q.shape[2:]
        q = q.reshape(nh, self.head_dim, -1).transpose(1, 2)
        k, v = (
            proj(x).reshape(nh, self.head_dim, -1).transpose(1, 2)
            for proj in (self.key, self.value)
        )
        qy, qx = _grid(out_h, out_w, s, h, x.device)  # padded coordinates of each query
        ky, kx = _grid(x.shape[2], x.shape[3], 1, 0, x.device)
        reach = b + h - 1
        rows = (ky[None] - qy[:, None] + reach).clamp(0, 2 * reach)
        cols = (kx[None] - qx[:, None] + reach).clamp(0, 2 * reach)
        logits = q @ k.transpose(-1, -2) + self._relative(q, rows, cols)
        if masked:
            top, left = (qy - h) // b * b, (qx - h) // b * b  # window origin, padded coordinates
            inside = (ky[None] >= top[:, None]) & (ky[None] < top[:, None] + self.window)
            inside &= (kx[None] >= left[:, None]) & (kx[None] < left[:, None] + self.window)
            logits = logits.masked_fill(~inside, float("-inf"))
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, -1, out_h, out_w)
        return out[:, :, : math.ceil(height / s), : math.ceil(width / s)]

    def _windows(self, t: torch.Tensor, win: int, blocks: int) -> torch.Tensor:
        """Overlapping haloed windows of a padded projection, ``(N*heads, blocks, win^2, d)``."""
        t = t.unfold(2, win, self.block_size).unfold(3, win, self.block_size)
        t = t.reshape(-1, self.head_dim, blocks, win * win)
        return t.permute(0, 2, 3, 1)

    def _relative(self, q: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Relative logits ``q.(r_dy + r_dx)`` of queries ``(..., Q, d)`` against keys whose
        table indices per (query, key) pair are ``rows``/``cols`` ``(Q, K)``.

        One embedding per pair and a batched matmul over queries (2.5x faster on CPU,
        backward included, than gathering ``q @ tables.T``).
        """
        pairs = self.rel_height[rows] + self.rel_width[cols]  # (Q, K, d)
        return torch.einsum("...qd,qkd->...qk", q, pairs)


class HaloBlock(nn.Module):
    """HaloNet's bottleneck block: a ResNet bottleneck with attention in place of the 3x3 conv.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        spec: the trunk's architecture (block, halo, heads, bottleneck ratio).
        stride: 1, or 2 (strided self-attentive downsampling; the shortcut is a strided 1x1
            conv, as in ResNet).
    """

    def __init__(self, in_channels: int, out_channels: int, spec: HaloNetSpec, stride: int) -> None:
        super().__init__()
        inner = int(out_channels * spec.bottleneck_ratio)
        self.reduce = _conv_bn(in_channels, inner, relu=True)
        self.attention = HaloAttention(
            inner,
            heads=spec.heads,
            block_size=spec.block_size,
            halo_size=spec.halo_size,
            stride=stride,
        )
        self.post = nn.Sequential(nn.BatchNorm2d(inner), nn.ReLU())
        self.expand = _conv_bn(inner, out_channels, relu=False)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else _conv_bn(in_channels, out_channels, relu=False, stride=stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.post(self.attention(self.reduce(x))))
        return F.relu(out + self.shortcut(x))


class HaloNetTrunk(nn.Module):
    """A HaloNet feature trunk: conv stem, then stages of :class:`HaloBlock`, mapping
    ``(N, C, H, W)`` to a latent grid ``(N, out_channels, h, w)``.

    Args:
        name: one of :data:`HALONET_TRUNKS`.
        in_channels: image channels (1 and 3 both work: only the stem sees them).

    Attributes:
        trunk_name: the trunk's name.
        out_channels: channels of the latent grid (the last stage's width).
    """

    def __init__(self, name: str, in_channels: int = 3) -> None:
        super().__init__()
        if name not in HALONET_SPECS:
            raise ValueError(f"unknown HaloNet trunk {name!r}; choose from {list(HALONET_TRUNKS)}")
        spec = HALONET_SPECS[name]
        self.trunk_name, self.spec = name, spec
        self.stem = _conv_bn(in_channels, spec.stem_channels, relu=True, stride=2, kernel=3)
        blocks, channels = [], spec.stem_channels
        for width, depth, stride in zip(spec.widths, spec.depths, spec.strides, strict=True):
            for index in range(depth):
                blocks.append(HaloBlock(channels, width, spec, stride if index == 0 else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The latent grid ``(h, w)`` produced from an ``height x width`` image: the stem and
        each strided stage halve it, rounding up."""
        for stride in (2, *self.spec.strides):
            height, width = math.ceil(height / stride), math.ceil(width / stride)
        return height, width

    def set_implementation(self, implementation: str) -> None:
        """Run every attention layer as ``implementation`` (one of :data:`IMPLEMENTATIONS`)."""
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}"
            )
        for module in self.modules():
            if isinstance(module, HaloAttention):
                module.implementation = implementation


def _conv_bn(
    in_channels: int, out_channels: int, *, relu: bool, stride: int = 1, kernel: int = 1
) -> nn.Sequential:
    layers = [
        nn.Conv2d(
            in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False
        ),
        nn.BatchNorm2d(out_channels),
    ]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


def block_offsets(
    block_size: int, halo_size: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative-table indices of every (query, key) pair inside one haloed block.

    Returns:
        ``(rows, cols)``, each ``((b/s)^2, (b+2h)^2)``: ``dy + b + h - 1`` and ``dx + b + h - 1``
        where ``dy, dx`` is the key's offset from the query.
    """
    side, win = block_size // stride, block_size + 2 * halo_size
    qy, qx = _grid(side, side, stride, 0, torch.device("cpu"))
    ky, kx = _grid(win, win, 1, -halo_size, torch.device("cpu"))
    reach = block_size + halo_size - 1
    return ky[None] - qy[:, None] + reach, kx[None] - qx[:, None] + reach


def _grid(
    height: int, width: int, step: int, origin: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column coordinates ``origin + step * i`` of a ``height x width`` grid, flattened."""
    ys = origin + step * torch.arange(height, device=device)
    xs = origin + step * torch.arange(width, device=device)
    return ys.repeat_interleave(width), xs.repeat(height)
