"""Kolmogorov-Arnold layers whose nodes select among activation function spaces (S-KAN).

Yang, Zhang, Luo, Lu & Shen, "Activation Space Selectable Kolmogorov-Arnold Networks" (2024,
arXiv 2408.08338). A KAN layer (Liu et al., 2024) puts a learnable univariate function
``phi_{j,i}`` on every edge and sums at the nodes, ``y_j = sum_i phi_{j,i}(x_i)``. One KAN
parameterises every ``phi`` in one *activation function space* (B-splines in KAN, Chebyshev
polynomials in ChebyKAN, Fourier series in FourierKAN, Gaussian radial basis functions in
FastKAN), and which space fits depends on the task. S-KAN gives every node the whole pool: each
space ``s`` holds its own coefficients and yields ``y_j^s``, and node ``j`` outputs
``sum_s w_{j,s} y_j^s`` with learnable selection weights ``w_{j,.}``. Training then narrows the
pool (full training, selective training, pruning; :meth:`SelectableKANLinear.select`) so that
each node ends with the space it selected.

The spaces follow their reference implementations: ``bspline`` is efficient-kan's cubic
B-splines on a uniform grid over ``[-1, 1]`` plus the residual ``SiLU`` branch of KAN;
``chebyshev`` is ChebyKAN's ``T_0 .. T_G`` of ``tanh(x)``; ``fourier`` is FourierKAN's
``cos(kx), sin(kx)`` for ``k = 1 .. G``; ``rbf`` is FastKAN's ``exp(-((x - c) / h)^2)`` on ``G``
centres over ``[-2, 2]``. ``G`` (``grid``) sets the resolution of every space.

Departures (the paper's full text was not available to us, only its abstract and summaries;
no reference code was found): the selection weights are a softmax over per-node logits (a proper
distribution, initially uniform), the pool holds these four spaces (the paper's also lists
wavelets), and the schedule's three phases keep all spaces, then the ``keep`` strongest per
node, then only the strongest; the phase lengths are ours (see :mod:`components.models.skan`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SPACES: tuple[str, ...] = ("bspline", "chebyshev", "fourier", "rbf")
SPLINE_ORDER = 3


def check_spaces(spaces: Sequence[str], *, param: str) -> tuple[str, ...]:
    """``spaces`` as a tuple, or a ``ValueError`` naming ``param`` and the unknown space."""
    spaces = tuple(spaces) if not isinstance(spaces, str) else (spaces,)
    unknown = [s for s in spaces if s not in SPACES]
    if not spaces or unknown or len(set(spaces)) != len(spaces):
        raise ValueError(
            f"{param} must be distinct activation spaces from {list(SPACES)}, got {list(spaces)}"
        )
    return spaces


def basis_size(space: str, grid: int) -> int:
    """Number of basis functions of ``space`` at resolution ``grid``."""
    return {"bspline": grid + SPLINE_ORDER, "chebyshev": grid + 1, "fourier": 2 * grid}.get(
        space, grid
    )


def bspline_basis(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Cubic B-spline bases of ``x`` ``(N, D)`` on ``grid`` uniform intervals over ``[-1, 1]``
    (knots extended by 3 on each side, as KAN's): ``(N, D, grid + 3)``. They sum to 1 inside
    ``[-1, 1]`` and vanish beyond the extended knots.

    The same values as the Cox-de Boor recursion, computed sparsely: on uniform knots a point
    in knot interval ``i`` at local position ``t`` meets only bases ``i - 3 .. i``, with the
    cardinal cubic weights ``(1-t)^3, 3t^3 - 6t^2 + 4, -3t^3 + 3t^2 + 3t + 1, t^3`` (over 6),
    which are scattered into the dense basis (an order of magnitude cheaper on a CPU).
    """
    count = grid + SPLINE_ORDER
    u = (x + 1.0) * (grid / 2.0) + SPLINE_ORDER  # knot coordinates: knot j sits at u = j
    inside = (u >= 0) & (u < count + SPLINE_ORDER)
    interval = u.detach().floor().clamp(0, count + SPLINE_ORDER - 1)
    t = (u - interval).unsqueeze(-1)
    t2, t3 = t * t, t * t * t
    weights = torch.cat([(1 - t) ** 3, 3 * t3 - 6 * t2 + 4, -3 * t3 + 3 * t2 + 3 * t + 1, t3], -1)
    weights = weights * (inside.unsqueeze(-1) / 6.0)
    # Padded columns: column c holds basis c - 3, so intervals near the ends index safely.
    index = interval.long().unsqueeze(-1) + torch.arange(SPLINE_ORDER + 1)
    dense = x.new_zeros(*x.shape, count + 2 * SPLINE_ORDER).scatter(-1, index, weights)
    return dense[..., SPLINE_ORDER : SPLINE_ORDER + count]


def space_basis(space: str, x: torch.Tensor, grid: int) -> torch.Tensor:
    """The basis functions of ``space`` evaluated at ``x`` ``(N, D)``: ``(N, D, K)``."""
    if space == "bspline":
        return bspline_basis(x, grid)
    if space == "chebyshev":
        t = torch.tanh(x).clamp(-1 + 1e-6, 1 - 1e-6).unsqueeze(-1)
        return torch.cos(torch.arange(grid + 1, dtype=x.dtype) * torch.acos(t))
    if space == "fourier":
        kx = x.unsqueeze(-1) * torch.arange(1, grid + 1, dtype=x.dtype)
        return torch.cat([torch.cos(kx), torch.sin(kx)], dim=-1)
    centres = torch.linspace(-2.0, 2.0, grid, dtype=x.dtype)
    width = 4.0 / max(grid - 1, 1)
    return torch.exp(-(((x.unsqueeze(-1) - centres) / width) ** 2))


class SelectableKANLinear(nn.Module):
    """A KAN layer ``in_features -> out_features`` whose nodes mix activation spaces.

    Args:
        in_features: inputs.
        out_features: nodes.
        spaces: the activation function spaces in the pool (see :data:`SPACES`).
        grid: resolution ``G`` of every space.

    Attributes:
        selection: ``(out_features, len(spaces))`` logits; :meth:`selection_weights` softmaxes
            them over the spaces still kept.
        kept: ``(out_features, len(spaces))`` bool buffer, the spaces each node still uses.
    """

    def __init__(
        self, in_features: int, out_features: int, *, spaces: Sequence[str] = SPACES, grid: int = 5
    ) -> None:
        super().__init__()
        self.spaces = check_spaces(spaces, param="spaces")
        if grid < 2:
            raise ValueError(f"grid must be >= 2, got {grid}")
        self.in_features, self.out_features, self.grid = in_features, out_features, grid
        self.coefficients = nn.ParameterDict(
            {
                s: nn.Parameter(
                    torch.randn(out_features, in_features, basis_size(s, grid))
                    / math.sqrt(in_features * basis_size(s, grid))
                )
                for s in self.spaces
            }
        )
        if "bspline" in self.spaces:
            self.base = nn.Linear(in_features, out_features, bias=False)
        self.selection = nn.Parameter(torch.zeros(out_features, len(self.spaces)))
        self.register_buffer("kept", torch.ones(out_features, len(self.spaces), dtype=torch.bool))

    def selection_weights(self) -> torch.Tensor:
        """``(out_features, len(spaces))``: each node's distribution over its kept spaces."""
        return self.selection.masked_fill(~self.kept, float("-inf")).softmax(dim=-1)

    @torch.no_grad()
    def select(self, keep: int) -> None:
        """Narrow every node to its ``keep`` strongest kept spaces (idempotent once narrowed).

        The weights renormalise over the spaces kept; each kept space's coefficients are
        rescaled by ``old weight / new weight``, so its contribution to the node is unchanged
        and only the dropped spaces' contributions leave the output.
        """
        before = self.selection_weights()
        top = before.topk(min(keep, len(self.spaces)), dim=-1).indices
        self.kept.copy_(torch.zeros_like(self.kept).scatter_(-1, top, True) & self.kept)
        ratio = torch.where(self.kept, before / self.selection_weights(), 1.0)
        for index, space in enumerate(self.spaces):
            self.coefficients[space].mul_(ratio[:, index, None, None])
            if space == "bspline":
                self.base.weight.mul_(ratio[:, index, None])

    def space_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, out_features, len(spaces))``: every node's output in every space (spaces no
        node keeps are left at zero and not computed)."""
        used = self.kept.any(dim=0)
        outputs = x.new_zeros(x.shape[0], self.out_features, len(self.spaces))
        for index, space in enumerate(self.spaces):
            if not used[index]:
                continue
            basis = space_basis(space, x, self.grid)
            out = basis.flatten(1) @ self.coefficients[space].flatten(1).T
            if space == "bspline":
                out = out + self.base(F.silu(x))
            outputs[:, :, index] = out
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_features) -> (N, out_features)``: ``sum_s w_{j,s} y_j^s``, computed as one
        matrix product over every kept space's basis with the weights folded into the
        coefficients (the same sum as :meth:`space_outputs`, with far fewer operations)."""
        weights = self.selection_weights()
        used = self.kept.any(dim=0).tolist()
        features, coefficients = [], []
        for index, space in enumerate(self.spaces):
            if not used[index]:
                continue
            features.append(space_basis(space, x, self.grid).flatten(1))
            coefficients.append(self.coefficients[space].flatten(1) * weights[:, index, None])
            if space == "bspline":
                features.append(F.silu(x))
                coefficients.append(self.base.weight * weights[:, index, None])
        return torch.cat(features, dim=1) @ torch.cat(coefficients, dim=1).T


class SelectableKANConv2d(nn.Module):
    """A KAN convolution (S-ConvKAN): every output channel is a :class:`SelectableKANLinear`
    node reading the ``in_channels * kernel**2`` values of each patch.

    Args:
        in_channels: input channels.
        out_channels: output channels (the KAN layer's nodes).
        kernel: square kernel size.
        stride: convolution stride.
        padding: zero padding (default ``kernel // 2``: same size at stride 1, ``ceil(n / 2)``
            at stride 2).
        spaces: activation function spaces.
        grid: resolution of every space.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        padding: int | None = None,
        *,
        spaces: Sequence[str] = SPACES,
        grid: int = 5,
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.padding = kernel // 2 if padding is None else padding
        self.out_channels = out_channels
        self.kan = SelectableKANLinear(
            in_channels * kernel * kernel, out_channels, spaces=spaces, grid=grid
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) -> (N, out_channels, H', W')``."""
        n, _, h, w = x.shape
        patches = F.unfold(x, self.kernel, padding=self.padding, stride=self.stride)
        out_h = (h + 2 * self.padding - self.kernel) // self.stride + 1
        out_w = (w + 2 * self.padding - self.kernel) // self.stride + 1
        y = self.kan(patches.transpose(1, 2).flatten(0, 1))
        return (
            y.view(n, out_h * out_w, self.out_channels)
            .transpose(1, 2)
            .reshape(n, self.out_channels, out_h, out_w)
        )


def kan_layers(module: nn.Module) -> list[SelectableKANLinear]:
    """Every :class:`SelectableKANLinear` inside ``module``."""
    return [m for m in module.modules() if isinstance(m, SelectableKANLinear)]


def narrow(module: nn.Module, keep: int) -> None:
    """Narrow every selectable KAN layer in ``module`` to its ``keep`` strongest spaces."""
    for layer in kan_layers(module):
        layer.select(keep)


def kan_network(
    widths: Sequence[int], *, spaces: Sequence[str] = SPACES, grid: int = 5
) -> nn.Sequential:
    """Stacked :class:`SelectableKANLinear` layers ``widths[0] -> ... -> widths[-1]``."""
    return nn.Sequential(
        *(
            SelectableKANLinear(a, b, spaces=spaces, grid=grid)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
    )
