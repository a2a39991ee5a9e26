"""Primitive operations, the mixed operation and the genotype of the DARTS search space.

The primitive set is a reduced version of DARTS' (Liu, Simonyan & Yang, ICLR 2019, section 3.1):
the 5x5 convolutions are dropped because an 8x8 digit only has 2x2 spatial extent after two
reductions. Batch norm is non-affine, as in the paper's search phase, so that the architecture
weights rather than BN scales decide how much each operation contributes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

PRIMITIVES: tuple[str, ...] = (
    "none",
    "skip_connect",
    "max_pool_3x3",
    "avg_pool_3x3",
    "sep_conv_3x3",
    "dil_conv_3x3",
)


class Zero(nn.Module):
    """The ``none`` operation: a zero tensor of the (possibly strided) output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """``ReLU -> conv -> BN``, the DARTS building block."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """Dilated depthwise-separable convolution (``ReLU -> dw dilated conv -> pw conv -> BN``)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, affine: bool, *, dilation: int = 2
    ) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_in, 3, stride, dilation, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Separable convolution applied twice, as in DARTS (only the first application strides)."""

    def __init__(self, c_in: int, c_out: int, stride: int, affine: bool) -> None:
        super().__init__(
            DilConv(c_in, c_in, stride, affine, dilation=1),
            DilConv(c_in, c_out, 1, affine, dilation=1),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset strided 1x1 convs (DARTS' strided identity)."""

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # The offset branch sees the odd pixels; pad back so both branches have the same size.
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


def _pool(kind: type[nn.Module], c: int, stride: int, affine: bool) -> nn.Module:
    extra = {"count_include_pad": False} if kind is nn.AvgPool2d else {}
    return nn.Sequential(kind(3, stride, 1, **extra), nn.BatchNorm2d(c, affine=affine))


OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "skip_connect": lambda c, stride, affine: (
        nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    ),
    "max_pool_3x3": lambda c, stride, affine: _pool(nn.MaxPool2d, c, stride, affine),
    "avg_pool_3x3": lambda c, stride, affine: _pool(nn.AvgPool2d, c, stride, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, stride, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, stride, affine),
}


def make_op(name: str, channels: int, stride: int, *, affine: bool) -> nn.Module:
    """Build primitive ``name`` mapping ``channels`` to ``channels`` with the given stride."""
    return OPS[name](channels, stride, affine)


class MixedOp(nn.Module):
    """One edge of the supernet: every primitive, mixed by architecture weights."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(p, channels, stride, affine=False) for p in PRIMITIVES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted sum ``sum_o w_o * o(x)`` over the primitives (DARTS eq. 2)."""
        return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))


@dataclass(frozen=True)
class Genotype:
    """A discrete cell pair: two ``(op, input_index)`` edges per intermediate node.

    Input index 0 and 1 are the cell inputs (outputs of the two previous cells); index ``k >= 2``
    is intermediate node ``k - 2``. The cell output concatenates all intermediate nodes.

    Attributes:
        normal: edges of the normal cell, node by node.
        reduce: edges of the reduction cell, node by node.
    """

    normal: tuple[tuple[str, int], ...]
    reduce: tuple[tuple[str, int], ...]

    @property
    def nodes(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    def validate(self) -> Genotype:
        """Check the cell structure and return ``self``.

        Raises:
            ValueError: if a cell has an odd or mismatched edge count, a ``none`` or unknown op,
                an input that is not an earlier node, or one node fed twice by the same input.
        """
        if not self.normal or len(self.normal) % 2 or len(self.reduce) != len(self.normal):
            raise ValueError("each cell needs exactly two edges per intermediate node")
        for cell in (self.normal, self.reduce):
            for node in range(self.nodes):
                pair = cell[2 * node : 2 * node + 2]
                if pair[0][1] == pair[1][1]:
                    raise ValueError(f"node {node} uses input {pair[0][1]} twice")
                for op, src in pair:
                    if op not in PRIMITIVES or op == "none":
                        raise ValueError(f"invalid op {op!r}")
                    if not 0 <= src < node + 2:
                        raise ValueError(f"node {node} reads input {src}, not an earlier node")
        return self

    def to_dict(self) -> dict[str, list[list[str | int]]]:
        """JSON-serialisable form."""
        return {"normal": [list(e) for e in self.normal], "reduce": [list(e) for e in self.reduce]}

    @classmethod
    def from_dict(cls, data: dict[str, list[list[str | int]]]) -> Genotype:
        """Inverse of :meth:`to_dict`; validates the result."""
        edges = {k: tuple((str(op), int(src)) for op, src in data[k]) for k in ("normal", "reduce")}
        return cls(**edges).validate()
