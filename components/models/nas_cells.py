"""Cells, the DARTS supernet, the derived (discrete) network and its trunk as a backbone.

All networks follow DARTS (Liu, Simonyan & Yang, ICLR 2019, section 3 and appendix A): a 3x3
conv stem, a stack of cells where the cells at 1/3 and 2/3 of the depth are reduction cells
(stride 2, doubled channels), each cell reading the outputs of the two previous cells, and global
average pooling before a linear classifier. Shrunk for 8x8 digits on a 2-core CPU: a few channels,
2-3 cells and 2-4 intermediate nodes instead of 16 channels, 8 cells and 4 nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from components.models.nas_ops import (
    PRIMITIVES,
    FactorizedReduce,
    Genotype,
    MixedOp,
    ReLUConvBN,
    make_norm,
    make_op,
)


def reduction_layers(cells: int) -> set[int]:
    """Indices of the reduction cells: at 1/3 and 2/3 of the depth, as in DARTS."""
    return {cells // 3, 2 * cells // 3}


def num_edges(nodes: int) -> int:
    """Edges of a search cell: node ``i`` has ``i + 2`` candidate inputs."""
    return sum(i + 2 for i in range(nodes))


class _CellBase(nn.Module):
    """Shared input preprocessing: bring both cell inputs to ``c`` channels and one resolution."""

    def __init__(
        self, c_pp: int, c_p: int, c: int, reduce_prev: bool, affine: bool, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.pre0 = (
            FactorizedReduce(c_pp, c, affine, norm)
            if reduce_prev
            else ReLUConvBN(c_pp, c, 1, 1, affine, norm)
        )
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, affine, norm)


class SearchCell(_CellBase):
    """A cell whose every edge is a :class:`MixedOp`.

    Args:
        nodes: intermediate nodes.
        c_pp: channels of the cell two back.
        c_p: channels of the previous cell.
        c: channels of every node in this cell.
        reduce: whether this is a reduction cell.
        reduce_prev: whether the previous cell reduced (so input 0 needs downsampling).
        ops: the candidate operations of every edge.
    """

    def __init__(
        self,
        nodes: int,
        c_pp: int,
        c_p: int,
        c: int,
        reduce: bool,
        reduce_prev: bool,
        *,
        ops: Sequence[str] = PRIMITIVES,
    ) -> None:
        super().__init__(c_pp, c_p, c, reduce_prev, affine=False)
        self.nodes = nodes
        self.reduce = reduce
        self.op_names = tuple(ops)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduce and src < 2 else 1, ops=ops)
            for node in range(nodes)
            for src in range(node + 2)
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor | None,
        edges: tuple[tuple[str, int], ...] | None = None,
    ) -> torch.Tensor:
        """Mix all edges by ``weights`` (``(num_edges, len(ops))``), or, when ``edges``
        (a genotype cell) is given, run only its chosen ops on the shared weights."""
        states = [self.pre0(s0), self.pre1(s1)]
        offset = 0
        for node in range(self.nodes):
            if edges is None:
                out = sum(
                    self.edges[offset + src](h, weights[offset + src])
                    for src, h in enumerate(states)
                )
            else:
                out = sum(
                    self.edges[offset + src].ops[self.op_names.index(op)](states[src])
                    for op, src in edges[2 * node : 2 * node + 2]
                )
            offset += len(states)
            states.append(out)
        return torch.cat(states[2:], dim=1)


class DerivedCell(_CellBase):
    """A discrete cell: two chosen ops per node, as given by a genotype cell.

    ``norm`` is ``"batch"`` (the paper's) or ``"group"`` (see :class:`GenotypeBackbone`).
    """

    def __init__(
        self,
        edges: tuple[tuple[str, int], ...],
        c_pp: int,
        c_p: int,
        c: int,
        reduce: bool,
        reduce_prev: bool,
        norm: str = "batch",
    ) -> None:
        super().__init__(c_pp, c_p, c, reduce_prev, affine=True, norm=norm)
        self.reduce = reduce
        self.edges = edges
        self.ops = nn.ModuleList(
            make_op(op, c, 2 if reduce and src < 2 else 1, affine=True, norm=norm)
            for op, src in edges
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(len(self.edges) // 2):
            pair = range(2 * node, 2 * node + 2)
            states.append(sum(self.ops[i](states[self.edges[i][1]]) for i in pair))
        return torch.cat(states[2:], dim=1)


def _stack(cells: int, channels: int, nodes: int, build) -> tuple[nn.ModuleList, int]:
    """Wire ``cells`` cells with DARTS' channel bookkeeping; returns them and the last width."""
    c_pp = c_p = channels
    c, reduce_prev, layers = channels, False, []
    for i in range(cells):
        reduce = i in reduction_layers(cells)
        if reduce:
            c *= 2
        layers.append(build(c_pp, c_p, c, reduce, reduce_prev))
        c_pp, c_p, reduce_prev = c_p, nodes * c, reduce
    return nn.ModuleList(layers), c_p


def _stem(c_in: int, channels: int, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, channels, 3, padding=1, bias=False), make_norm(norm, channels, True)
    )


class SuperNet(nn.Module):
    """The DARTS supernet with architecture weights ``alpha_normal`` and ``alpha_reduce``.

    Args:
        in_channels: image channels.
        num_classes: output classes.
        channels: stem / first-cell channels.
        cells: number of cells.
        nodes: intermediate nodes per cell.
        ops: the candidate operations of every edge (the columns of the alphas).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int,
        cells: int,
        nodes: int,
        *,
        ops: Sequence[str] = PRIMITIVES,
    ):
        super().__init__()
        self.nodes = nodes
        self.ops = tuple(ops)
        self.stem = _stem(in_channels, channels)
        self.cells, c_out = _stack(
            cells,
            channels,
            nodes,
            lambda c_pp, c_p, c, red, red_prev: SearchCell(
                nodes, c_pp, c_p, c, red, red_prev, ops=ops
            ),
        )
        self.classifier = nn.Linear(c_out, num_classes)
        shape = (num_edges(nodes), len(self.ops))
        # Small random init, as in the paper (1e-3 * N(0, 1)).
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights."""
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the architecture weights."""
        return [p for n, p in self.named_parameters() if not n.startswith("alpha_")]

    def forward(self, x: torch.Tensor, genotype: Genotype | None = None) -> torch.Tensor:
        """Logits of the softmax-mixed supernet, or of the ``genotype`` sub-network when given."""
        w_normal = w_reduce = None
        if genotype is None:
            w_normal = self.alpha_normal.softmax(dim=-1)
            w_reduce = self.alpha_reduce.softmax(dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            weights = w_reduce if cell.reduce else w_normal
            edges = (
                None if genotype is None else (genotype.reduce if cell.reduce else genotype.normal)
            )
            s0, s1 = s1, cell(s0, s1, weights, edges)
        return self.classifier(s1.mean(dim=(2, 3)))


class GenotypeBackbone(nn.Module):
    """The trunk of a derived network: stem and cell stack, without pooling and classifier.

    Maps ``(N, C, H, W)`` to a latent grid ``(N, out_channels, h, w)``, like
    :class:`~components.models.backbones.ConvBackbone`, so a searched architecture can sit
    under a prototype layer. The two reduction cells halve the grid twice; every stride-2
    primitive pads so that a side ``n`` becomes ``ceil(n / 2)``, hence any image (an 8x8
    digit: 2x2) leaves a grid of at least 1x1.

    Normalisation: DARTS cells use BatchNorm, but a prototype trunk must not keep running
    statistics. ProtoPNet pushes prototypes in eval mode (running statistics) and then trains
    the last layer in train mode (batch statistics, which also update the running ones), so
    BatchNorm would make a pushed prototype differ from the patch it was copied from, both
    during that stage and afterwards; the fit loop freezes a stage's other parameters by
    leaving them out of the optimiser, which BatchNorm's buffers ignore. ``norm="group"``
    replaces every BatchNorm by a single-group GroupNorm (Wu & He, ECCV 2018): per-sample
    statistics over channels and positions, no running state, the same output in train and
    eval mode, so a frozen trunk gives exactly the latent patches the push copied. ``"batch"``
    is the paper's choice, kept for the plain classifier :class:`DerivedNetwork`. (Measured:
    after 10 epochs of tiny ProtoPNet on digits, BatchNorm leaves prototypes up to 0.016 away
    from their source patches; GroupNorm keeps them within 1e-6.)

    Args:
        in_channels: input image channels.
        genotype: the searched cells, or their :meth:`Genotype.to_dict` form.
        channels: stem / first-cell channels (doubled by each reduction cell).
        cells: number of cells (>= 3, so that both DARTS reduction cells exist).
        norm: ``"batch"`` or ``"group"``.

    Raises:
        ValueError: if ``cells < 3``, ``channels < 1``, ``norm`` is unknown or the genotype is
            invalid.
    """

    def __init__(
        self,
        in_channels: int,
        genotype: Genotype | Mapping,
        *,
        channels: int = 8,
        cells: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if cells < 3 or channels < 1:
            raise ValueError(
                f"a derived network needs cells >= 3 (two reduction cells) and channels >= 1, "
                f"got cells={cells}, channels={channels}"
            )
        if isinstance(genotype, Mapping):
            genotype = Genotype.from_dict(genotype)
        self.genotype = genotype.validate()
        self.stem = _stem(in_channels, channels, norm)
        self.cells, self.out_channels = _stack(
            cells,
            channels,
            genotype.nodes,
            lambda c_pp, c_p, c, red, red_prev: DerivedCell(
                genotype.reduce if red else genotype.normal, c_pp, c_p, c, red, red_prev, norm
            ),
        )

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The latent grid ``(h, w)`` produced from an ``height x width`` image."""
        for _ in range(sum(cell.reduce for cell in self.cells)):
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        return height, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The last cell's output, ``(N, out_channels, h, w)``."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return s1


class DerivedNetwork(GenotypeBackbone):
    """The discrete network built from a searched genotype, trained from scratch: a
    :class:`GenotypeBackbone` (BatchNorm, as in the paper), global average pooling and a linear
    classifier.

    Args:
        input_shape: ``(C, H, W)`` of one image.
        num_classes: output classes.
        genotype: the searched cells, or their :meth:`Genotype.to_dict` form (e.g. from a config).
        channels: stem / first-cell channels.
        cells: number of cells.

    Raises:
        ValueError: if ``input_shape`` is not 3-D, ``cells < 3`` or the genotype is invalid.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        genotype: Genotype | Mapping,
        channels: int = 8,
        cells: int = 3,
    ) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"DerivedNetwork needs (C, H, W) input, got {input_shape}")
        super().__init__(input_shape[0], genotype, channels=channels, cells=cells, norm="batch")
        self.classifier = nn.Linear(self.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)``."""
        return self.classifier(super().forward(x).mean(dim=(2, 3)))
