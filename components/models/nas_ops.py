"""Primitive operations, the mixed operation and the genotype of the DARTS search space.

The primitive set is a reduced version of DARTS' (Liu, Simonyan & Yang, ICLR 2019, section 3.1):
the 5x5 convolutions are dropped because an 8x8 digit only has 2x2 spatial extent after two
reductions. Batch norm is non-affine, as in the paper's search phase, so that the architecture
weights rather than BN scales decide how much each operation contributes.

Every normalising op takes ``norm``: ``"batch"`` (the paper's BatchNorm) or ``"group"``
(GroupNorm with one group, i.e. per-sample statistics over channels and positions; Wu & He,
ECCV 2018). The latter keeps no running statistics, which a prototype trunk needs (see
:class:`components.models.nas_cells.GenotypeBackbone`).

Beyond :data:`PRIMITIVES`, :data:`OPS` holds ``kan_conv``, a 3x3 S-ConvKAN convolution
(:class:`~components.models.kan_layers.SelectableKANConv2d`, grid 3) followed by the norm; a
search opts into it through its op set (``search.darts.ops``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import torch
from torch import nn

from components.models.kan_layers import SelectableKANConv2d

PRIMITIVES: tuple[str, ...] = (
    "none",
    "skip_connect",
    "max_pool_3x3",
    "avg_pool_3x3",
    "sep_conv_3x3",
    "dil_conv_3x3",
)


NORMS: tuple[str, ...] = ("batch", "group")


def make_norm(kind: str, channels: int, affine: bool) -> nn.Module:
    """A ``"batch"`` (BatchNorm) or ``"group"`` (single-group GroupNorm) normalisation layer.

    Raises:
        ValueError: for any other ``kind``.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=affine)
    if kind == "group":
        return nn.GroupNorm(1, channels, affine=affine)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class Zero(nn.Module):
    """The ``none`` operation: a zero tensor of the (possibly strided) output shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """``ReLU -> conv -> BN``, the DARTS building block."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool, norm: str = "batch"
    ) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            make_norm(norm, c_out, affine),
        )


class DilConv(nn.Sequential):
    """Dilated depthwise-separable convolution (``ReLU -> dw dilated conv -> pw conv -> BN``)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        affine: bool,
        *,
        dilation: int = 2,
        norm: str = "batch",
    ) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_in, 3, stride, dilation, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            make_norm(norm, c_out, affine),
        )


class SepConv(nn.Sequential):
    """Separable convolution applied twice, as in DARTS (only the first application strides)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, affine: bool, *, norm: str = "batch"
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, stride, affine, dilation=1, norm=norm),
            DilConv(c_in, c_out, 1, affine, dilation=1, norm=norm),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset strided 1x1 convs (DARTS' strided identity)."""

    def __init__(self, c_in: int, c_out: int, affine: bool, norm: str = "batch") -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = make_norm(norm, c_out, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # The offset branch sees the odd pixels; pad back so both branches have the same size.
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


def _pool(kind: type[nn.Module], c: int, stride: int, affine: bool, norm: str) -> nn.Module:
    extra = {"count_include_pad": False} if kind is nn.AvgPool2d else {}
    return nn.Sequential(kind(3, stride, 1, **extra), make_norm(norm, c, affine))


OPS: dict[str, Callable[[int, int, bool, str], nn.Module]] = {
    "none": lambda c, stride, affine, norm: Zero(stride),
    "skip_connect": lambda c, stride, affine, norm: (
        nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine, norm)
    ),
    "max_pool_3x3": lambda c, stride, affine, norm: _pool(nn.MaxPool2d, c, stride, affine, norm),
    "avg_pool_3x3": lambda c, stride, affine, norm: _pool(nn.AvgPool2d, c, stride, affine, norm),
    "sep_conv_3x3": lambda c, stride, affine, norm: SepConv(c, c, stride, affine, norm=norm),
    "dil_conv_3x3": lambda c, stride, affine, norm: DilConv(c, c, stride, affine, norm=norm),
    "kan_conv": lambda c, stride, affine, norm: nn.Sequential(
        SelectableKANConv2d(c, c, 3, stride, grid=3), make_norm(norm, c, affine)
    ),
}


def check_ops(ops: Sequence[str], *, param: str) -> tuple[str, ...]:
    """A search space's op set as a tuple; ``ValueError`` naming ``param`` if an op is unknown,
    repeated, or no op other than ``none`` is left to choose."""
    ops = (ops,) if isinstance(ops, str) else tuple(ops)
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"{param} has unknown op {unknown[0]!r} (known: {', '.join(OPS)})")
    if len(set(ops)) != len(ops) or not set(ops) - {"none"}:
        raise ValueError(f"{param} needs distinct ops, at least one other than none; got {ops}")
    return ops


def make_op(
    name: str, channels: int, stride: int, *, affine: bool, norm: str = "batch"
) -> nn.Module:
    """Build primitive ``name`` mapping ``channels`` to ``channels`` with the given stride."""
    return OPS[name](channels, stride, affine, norm)


class MixedOp(nn.Module):
    """One edge of the supernet: every op of ``ops``, mixed by architecture weights."""

    def __init__(self, channels: int, stride: int, *, ops: Sequence[str] = PRIMITIVES) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(p, channels, stride, affine=False) for p in ops)

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
                    if op not in OPS or op == "none":
                        valid = ", ".join(p for p in OPS if p != "none")
                        raise ValueError(f"invalid op {op!r} (valid: {valid})")
                    if not 0 <= src < node + 2:
                        raise ValueError(f"node {node} reads input {src}, not an earlier node")
        return self

    def to_dict(self) -> dict[str, list[list[str | int]]]:
        """JSON-serialisable form."""
        return {"normal": [list(e) for e in self.normal], "reduce": [list(e) for e in self.reduce]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[Sequence[str | int]]]) -> Genotype:
        """Inverse of :meth:`to_dict`; validates the result.

        Any mapping and any (non-string) sequences are accepted, so lists of lists, tuples and
        config containers all parse.

        Raises:
            ValueError: if ``data`` is not ``{"normal": [[op, src], ...], "reduce": [...]}``
                or the cells it describes are invalid (see :meth:`validate`).
        """
        if not isinstance(data, Mapping) or set(data) != {"normal", "reduce"}:
            keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"a genotype needs exactly the keys 'normal' and 'reduce', got {keys}")
        return cls(
            normal=_parse_cell(data["normal"]), reduce=_parse_cell(data["reduce"])
        ).validate()


def coerce_genotype(value: Any, *, param: str) -> Genotype:
    """Parse a genotype keyword (a :meth:`Genotype.to_dict` mapping) into a :class:`Genotype`.

    Args:
        value: the keyword's value; lists and tuples are both accepted for cells and edges.
        param: the config path to name in errors, e.g. ``"model.params.genotype"``.

    Raises:
        ValueError: if ``value`` is missing (``None``), not a mapping of two cells, or an
            invalid genotype; the message names ``param`` and where a genotype comes from.
    """
    where = (
        f"{param} must be a genotype {{'normal': [[op, input], ...], 'reduce': [...]}} as written "
        "to genotype.json by a DARTS / random_ws sweep"
    )
    if value is None:
        raise ValueError(f"{where}; it is missing")
    if isinstance(value, Genotype):
        return value.validate()
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}; got a {type(value).__name__}: {value!r}")
    try:
        return Genotype.from_dict(value)
    except ValueError as err:
        raise ValueError(f"{where}; {err}") from err


def _parse_cell(edges: object) -> tuple[tuple[str, int], ...]:
    """``[[op, src], ...]`` as a tuple of ``(str, int)`` edges."""
    if isinstance(edges, str | bytes) or not isinstance(edges, Sequence):
        raise ValueError(f"a genotype cell must be a list of [op, input] pairs, got {edges!r}")
    parsed = []
    for edge in edges:
        ok = isinstance(edge, Sequence) and not isinstance(edge, str | bytes) and len(edge) == 2
        if not ok or not isinstance(edge[0], str) or isinstance(edge[1], bool):
            raise ValueError(f"a genotype edge must be an [op, input] pair, got {edge!r}")
        if not isinstance(edge[1], Integral) or edge[1] < 0:
            raise ValueError(f"a genotype edge's input must be an int >= 0, got {edge!r}")
        parsed.append((edge[0], int(edge[1])))
    return tuple(parsed)
