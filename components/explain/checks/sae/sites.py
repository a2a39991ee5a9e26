"""Where sparse dictionaries attach: a network's ``Linear/Conv -> ReLU`` sublayers.

A *site* is a ``ReLU`` inside an ``nn.Sequential`` right after a ``Linear``, ``Conv1d`` or
``Conv2d``; it is named by the ReLU's module name (``net.2``, ``features.4``). Its activation
rows are the ReLU's outputs (an SAE reconstructs them) and the weight module's inputs (a
transcoder maps those to the outputs). A convolutional site has one row per location: the
output channels there, and the input patch the kernel reads (``unfold``), so features are
per-location and have activation maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
# Modules that are the identity (or a reshape) at evaluation time between a site and what reads it.
_PASS_THROUGH = (nn.Dropout, nn.Flatten, nn.Identity)


@dataclass(frozen=True)
class Site:
    """One ``weight -> ReLU`` sublayer.

    Attributes:
        name: the ReLU's module name.
        weight: the Linear / Conv module; relu: the ReLU module.
        after: the modules that follow the ReLU in its Sequential.
    """

    name: str
    weight: nn.Module
    relu: nn.Module
    after: tuple[nn.Module, ...]

    @property
    def spatial(self) -> bool:
        """Whether rows are per location (a convolution)."""
        return not isinstance(self.weight, nn.Linear)

    def next_linear(self) -> nn.Linear | None:
        """The Linear that reads this site's output directly (through dropout / flatten only,
        and only from a Linear site: a flattened conv map mixes locations)."""
        if self.spatial:
            return None
        for module in self.after:
            if isinstance(module, nn.Linear):
                return module
            if not isinstance(module, _PASS_THROUGH):
                return None
        return None


def find_sites(model: nn.Module) -> list[Site]:
    """Every ``Linear/Conv -> ReLU`` sublayer of ``model``, in module order."""
    sites = []
    for prefix, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module)
        for i in range(1, len(children)):
            if isinstance(children[i], nn.ReLU) and isinstance(children[i - 1], WEIGHT_TYPES):
                name = f"{prefix}.{i}" if prefix else str(i)
                sites.append(Site(name, children[i - 1], children[i], tuple(children[i + 1 :])))
    return sites


def pick_site(model: nn.Module, layer: str) -> Site:
    """The site named ``layer``, or the deepest one for ``auto``; ``ValueError`` listing the
    sites when there is none or the name is not one."""
    sites = find_sites(model)
    if not sites:
        raise ValueError("the model has no Linear/Conv -> ReLU sublayer to attach features to")
    if layer == "auto":
        return sites[-1]
    for site in sites:
        if site.name == layer:
            return site
    raise ValueError(f"explain.sae.layer={layer!r} is not one of {[s.name for s in sites]}")


def input_rows(site: Site, x: torch.Tensor) -> torch.Tensor:
    """The weight module's input as rows: itself (Linear) or the patch each location reads."""
    weight = site.weight
    if isinstance(weight, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(weight, nn.Conv1d):  # as a 1 x L image
        x = x.unsqueeze(2)
        kernel, padding = (1, weight.kernel_size[0]), (0, weight.padding[0])
        stride, dilation = (1, weight.stride[0]), (1, weight.dilation[0])
    else:
        kernel, padding, stride, dilation = (
            weight.kernel_size,
            weight.padding,
            weight.stride,
            weight.dilation,
        )
    patches = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def output_rows(y: torch.Tensor) -> torch.Tensor:
    """``(N, C, *spatial)`` or ``(N, C)`` activations as ``(rows, C)``."""
    return y.movedim(1, -1).reshape(-1, y.shape[1])


def rows_to_output(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`output_rows` for activations shaped ``like``."""
    moved = like.movedim(1, -1).shape
    return rows.reshape(moved).movedim(-1, 1)


@contextmanager
def spliced(site: Site, replace: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Iterator:
    """While open, the site's ReLU output is ``replace(input_rows, output_rows)`` (rows)."""
    captured = {}

    def keep_input(_module, args):
        captured["x"] = args[0]

    def swap_output(_module, _args, output):
        rows = replace(input_rows(site, captured["x"]), output_rows(output))
        return rows_to_output(rows, output)

    handles = [
        site.weight.register_forward_pre_hook(keep_input),
        site.relu.register_forward_hook(swap_output),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def collect(model: nn.Module, site: Site, x: np.ndarray, batch_size: int = 256) -> dict:
    """Run ``model`` on ``x`` and return the site's activation rows: ``inputs`` (transcoder),
    ``outputs`` (SAE), and ``map_shape``: the spatial shape of one sample's map (``()`` for a
    Linear site), so rows ``i * prod(map_shape) ...`` belong to sample ``i``."""
    ins, outs, shapes = [], [], []

    def keep(inputs, outputs):
        ins.append(inputs.clone())
        outs.append(outputs.clone())
        return outputs

    def keep_shape(_module, _args, output):
        shapes.append(tuple(output.shape[2:]))

    handle = site.relu.register_forward_hook(keep_shape)
    try:
        with spliced(site, keep):
            for start in range(0, len(x), batch_size):
                model(torch.from_numpy(x[start : start + batch_size]))
    finally:
        handle.remove()
    return {
        "inputs": torch.cat(ins).numpy(),
        "outputs": torch.cat(outs).numpy(),
        "map_shape": shapes[0] if shapes else (),
    }
