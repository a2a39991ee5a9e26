"""BossNAS's HyTra search space, shrunk to small images: hybrid CNN-transformer layers on a fabric.

Li et al., "BossNAS: Exploring Hybrid CNN-transformers with Block-wisely Self-supervised Neural
Architecture Search" (ICCV 2021; reference code changlin31/BossNAS, ``searching/bossnas/models/
supernets/hytra_supernet.py`` and ``utils/hytra_paths.py``). Every layer of a block picks one of
two candidates, a ResNet bottleneck (``conv``: 1x1, 3x3, 1x1 convolutions, ``ResConv``) or a
BoTNet bottleneck whose 3x3 convolution is multi-head self-attention over all positions
(``attn``: ``ResAtt``), and, the fabric's choice, the resolution it works at: the same as the
layer before or half of it (a stride-2 layer), so the downsampling positions are searched.
Channels double with every halving (``width * 2**level``), as the paper's stages do.

A layer choice is ``(op, level)``: ``level`` 0 is the stem's resolution, ``level`` k is
``1/2**k`` of it. A path through a block is one choice per layer; the next block starts at the
level the previous block's path ended on (the reference's ``stage_depths`` update).

Departures, for 8x8 to 32x32 inputs on a CPU: ``levels`` (3) resolutions instead of 4, blocks
of a few layers instead of 4 x 4, the stem is one 3x3 convolution without downsampling;
attention is allowed from ``attn_min_level`` on (the reference allows it only at the two
coarsest of its four resolutions); the reference's relative position encoding is replaced by a
depthwise 3x3 convolution added before attention (a conditional position encoding: any input
size works, the registry builds models for 7x5 images); a stride-2 attention layer average-pools
to ``ceil(H/2) x ceil(W/2)`` after attention (BoTNet pools 2x2, which fails on 1-pixel maps).
Paths may step down at most one level per layer (the reference's restricted ``all_path``),
including the first layer of the first block.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

import torch
from torch import nn

OPS = ("conv", "attn")
Choice = tuple[str, int]
Path = tuple[Choice, ...]


def channels(width: int, level: int) -> int:
    """Channels at ``level``: ``width`` at the stem's resolution, doubled at every halving."""
    return width * 2**level


def _bn_conv(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1):
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(c_out)]


class _Shortcut(nn.Sequential):
    """Identity, or a strided 1x1 projection with batch norm where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(
            *([] if stride == 1 and c_in == c_out else _bn_conv(c_in, c_out, 1, stride))
        )


class ResConv(nn.Module):
    """ResNet bottleneck: 1x1 to ``c_out / expansion``, 3x3 (``stride``), 1x1 to ``c_out``."""

    def __init__(self, c_in: int, c_out: int, *, stride: int, expansion: int) -> None:
        super().__init__()
        inner = max(c_out // expansion, 1)
        self.body = nn.Sequential(
            *_bn_conv(c_in, inner),
            nn.ReLU(inplace=True),
            *_bn_conv(inner, inner, 3, stride),
            nn.ReLU(inplace=True),
            *_bn_conv(inner, c_out),
        )
        self.shortcut = _Shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over every position of a feature map, with a depthwise 3x3
    convolution as position encoding."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = (
            self.qkv(x + self.position(x))
            .reshape(n, 3, self.heads, c // self.heads, h * w)
            .unbind(1)
        )
        out = nn.functional.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return out.transpose(-1, -2).reshape(n, c, h, w)


class ResAtt(nn.Module):
    """BoTNet bottleneck: the ResNet bottleneck with self-attention in place of the 3x3
    convolution (average-pooled to half size after attention when ``stride`` is 2)."""

    def __init__(self, c_in: int, c_out: int, *, stride: int, expansion: int, heads: int) -> None:
        super().__init__()
        inner = max(c_out // expansion, 1)
        self.reduce = nn.Sequential(*_bn_conv(c_in, inner), nn.ReLU(inplace=True))
        self.attention = SelfAttention2d(inner, heads)
        self.stride = stride
        self.expand = nn.Sequential(
            nn.BatchNorm2d(inner), nn.ReLU(inplace=True), *_bn_conv(inner, c_out)
        )
        self.shortcut = _Shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attention(self.reduce(x))
        if self.stride == 2:
            size = (math.ceil(y.shape[-2] / 2), math.ceil(y.shape[-1] / 2))
            y = nn.functional.adaptive_avg_pool2d(y, size)
        return torch.relu(self.expand(y) + self.shortcut(x))


def make_layer(
    op: str, level_in: int, level_out: int, *, width: int, expansion: int, heads: int
) -> nn.Module:
    """The candidate layer ``op`` from ``level_in`` to ``level_out`` (the same or the next)."""
    c_in, c_out = channels(width, level_in), channels(width, level_out)
    stride = 2 if level_out > level_in else 1
    if op == "conv":
        return ResConv(c_in, c_out, stride=stride, expansion=expansion)
    return ResAtt(c_in, c_out, stride=stride, expansion=expansion, heads=heads)


def stem(in_channels: int, width: int) -> nn.Sequential:
    """3x3 convolution to ``width`` channels at the input resolution, batch norm, ReLU."""
    return nn.Sequential(*_bn_conv(in_channels, width, 3), nn.ReLU(inplace=True))


def block_paths(start: int, layers: int, levels: int, attn_min_level: int) -> list[Path]:
    """Every path through a block of ``layers`` layers entered at level ``start``: each layer
    stays at its input's level or halves the resolution (up to ``levels - 1``), and is ``conv``
    or, from ``attn_min_level`` on, ``attn``."""
    paths = []
    for steps in itertools.product((0, 1), repeat=layers):
        path_levels = list(itertools.accumulate(steps, initial=start))[1:]
        if path_levels[-1] > levels - 1:
            continue
        options = [[op for op in OPS if op == "conv" or lv >= attn_min_level] for lv in path_levels]
        for ops in itertools.product(*options):
            paths.append(tuple(zip(ops, path_levels, strict=True)))
    return paths


def path_name(path: Sequence[Sequence]) -> str:
    """``conv@0 attn@1``: a path as text (op and level of each layer)."""
    return " ".join(f"{op}@{level}" for op, level in path)


class SuperBlock(nn.Module):
    """One searchable block entered at level ``start``: every candidate layer (op, input level,
    output level) that some path through the block uses, with weights shared between paths."""

    def __init__(
        self, start: int, layers: int, levels: int, *, width: int, expansion: int, heads: int
    ) -> None:
        super().__init__()
        self.start = start
        self.candidates = nn.ModuleList()
        for i in range(layers):
            here = nn.ModuleDict()
            for level_in in range(start, min(start + i, levels - 1) + 1):
                for level_out in range(level_in, min(level_in + 1, levels - 1) + 1):
                    for op in OPS:
                        here[f"{op}_{level_in}_{level_out}"] = make_layer(
                            op, level_in, level_out, width=width, expansion=expansion, heads=heads
                        )
            self.candidates.append(here)

    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor:
        level = self.start
        for here, (op, out) in zip(self.candidates, path, strict=True):
            x = here[f"{op}_{level}_{out}"](x)
            level = out
        return x


class HyTraNet(nn.Module):
    """A searched HyTra architecture as one network: stem, the blocks' layers, global average
    pooling and a linear classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        blocks: Sequence[Path],
        *,
        width: int,
        expansion: int,
        heads: int,
    ) -> None:
        super().__init__()
        self.blocks = tuple(blocks)
        self.stem = stem(in_channels, width)
        layers, level = [], 0
        for op, out in itertools.chain.from_iterable(self.blocks):
            layers.append(make_layer(op, level, out, width=width, expansion=expansion, heads=heads))
            level = out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(channels(width, level), num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's feature map."""
        return self.layers(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(-2, -1)))


def parse_architecture(value: Any, *, param: str) -> tuple[Path, ...]:
    """The blocks of an architecture ``{"blocks": [[[op, level], ...], ...]}`` (as a BossNAS
    sweep writes it; a ``ratings`` entry beside ``blocks`` is ignored).

    Raises:
        ValueError: naming ``param`` when the value is missing or not such a mapping, an op is
            unknown, or a level does not stay or step down one level from the layer before
            (the stem is level 0).
    """
    where = (
        f"{param} must be an architecture {{'blocks': [[[op, level], ...], ...]}} with op in "
        f"{list(OPS)}, as written to genotype.json by a search=bossnas sweep"
    )
    if value is None:
        raise ValueError(f"{where}; it is missing")
    if not isinstance(value, Mapping) or set(value) - {"blocks", "ratings"}:
        raise ValueError(f"{where}; got {value!r}")
    blocks, level = value.get("blocks"), 0
    if not _is_list(blocks) or not blocks:
        raise ValueError(f"{where}; 'blocks' is {blocks!r}")
    parsed = []
    for block in blocks:
        if not _is_list(block) or not block:
            raise ValueError(f"{where}; a block must be a non-empty list of layers, got {block!r}")
        layers = []
        for layer in block:
            ok = _is_list(layer) and len(layer) == 2 and layer[0] in OPS
            if not ok or not isinstance(layer[1], Integral) or isinstance(layer[1], bool):
                raise ValueError(f"{where}; a layer must be [op, level], got {layer!r}")
            if int(layer[1]) not in (level, level + 1):
                raise ValueError(
                    f"{where}; layer {list(layer)} follows level {level}: a layer stays at its "
                    "input's level or goes one level down"
                )
            level = int(layer[1])
            layers.append((str(layer[0]), level))
        parsed.append(tuple(layers))
    return tuple(parsed)


def architecture_dict(blocks: Sequence[Path]) -> dict[str, list]:
    """``{"blocks": [[[op, level], ...], ...]}``: plain JSON, what ``parse_architecture`` reads."""
    return {"blocks": [[[op, int(level)] for op, level in block] for block in blocks]}


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)
