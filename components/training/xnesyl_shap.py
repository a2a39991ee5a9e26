"""Exact part-level Shapley values of an image classifier's class probabilities.

The players are the parts present in an image (located by its label map: ``k`` = part
``k-1``); a coalition keeps its parts and removes the others by painting their pixels with the
mean colour of the image's background (label 0), so a removed part looks like the part never
being there (the X-NeSyL reference explains a classifier over detected-part features, where an
absent part is a zero). The value of a coalition is the softmax probability of every class.
With ``m`` parts present the ``2^m`` coalitions are enumerated, so the values are exact
Shapley values (the reference estimates them with Kernel SHAP, 30 samples); parts absent from
an image get 0 (a dummy player). Cost: ``2^m`` forward passes per image, without gradient.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

CHUNK = 1024  # coalition images per forward pass


def part_shapley(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, num_parts: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapley values of the present parts for every class's probability.

    Args:
        model: a classifier; ``model(x).logits`` is ``(N, C)``. Run in eval mode, no gradient;
            its modes are restored after.
        x: images ``(N, channels, H, W)``.
        labels: part label maps ``(N, H, W)``, 0 background, ``k`` part ``k-1``.
        num_parts: ``P``, the number of parts in the vocabulary.

    Returns:
        float ``(N, C, P)`` Shapley values (for each image, a class's values sum over parts to
        its probability with every part minus its probability with none: efficiency), and the
        class probabilities ``(N, C)`` of the unmodified images (the full coalition).
    """
    labels = labels.to(x.device).long()
    slots = _present_slots(labels, num_parts)  # (N, M): part ids, -1 for padding
    m = slots.shape[1]
    coalitions = _coalitions(m, x.device)  # (2^M, M) bool: slot kept
    pixels = (labels[:, None] == (slots[:, :, None, None] + 1)) & (slots[:, :, None, None] >= 0)
    removed = (pixels[:, None] & ~coalitions[None, :, :, None, None]).any(dim=2)  # (N, 2^M, H, W)
    fill = _background_colour(x, labels)  # (N, channels)
    images = torch.where(removed[:, :, None], fill[:, None, :, None, None], x[:, None])
    with torch.no_grad(), evaluating(model):
        flat = images.flatten(0, 1)
        probs = torch.cat(
            [model(chunk).logits.float().softmax(dim=1) for chunk in flat.split(CHUNK)]
        )
    values = probs.view(len(x), len(coalitions), -1)  # (N, 2^M, C)
    per_slot = _shapley_from_values(values, m)  # (N, C, M)
    shap = torch.zeros(len(x), values.shape[2], num_parts + 1, device=x.device)
    index = torch.where(slots >= 0, slots, num_parts)[:, None, :].expand_as(per_slot)
    shap.scatter_add_(2, index, per_slot)
    return shap[:, :, :num_parts], values[:, -1]


def _present_slots(labels: torch.Tensor, num_parts: int) -> torch.Tensor:
    """``(N, M)`` ids of each image's present parts, padded with -1 to the most present."""
    present = torch.stack([(labels == k + 1).flatten(1).any(dim=1) for k in range(num_parts)], 1)
    count = int(present.sum(dim=1).max()) if len(labels) else 0
    ids = torch.arange(num_parts, device=labels.device).expand_as(present)
    ordered = torch.where(present, ids, num_parts).sort(dim=1).values[:, :count]
    return torch.where(ordered < num_parts, ordered, -1)


def _coalitions(m: int, device: torch.device) -> torch.Tensor:
    """bool ``(2^m, m)``: row ``b`` keeps slot ``s`` where bit ``s`` of ``b`` is set."""
    rows = torch.arange(2**m, device=device)
    return (rows[:, None] >> torch.arange(m, device=device)) & 1 == 1


def _shapley_from_values(values: torch.Tensor, m: int) -> torch.Tensor:
    """Shapley values ``(N, C, m)`` from coalition values ``(N, 2^m, C)``:
    ``phi_s = sum_{b not containing s} |b|! (m - |b| - 1)! / m! * (v(b + s) - v(b))``."""
    n, _, c = values.shape
    out = torch.zeros(n, c, m, device=values.device)
    for s in range(m):
        for b in range(2**m):
            if b >> s & 1:
                continue
            size = bin(b).count("1")
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            out[:, :, s] += weight * (values[:, b | 1 << s] - values[:, b])
    return out


def _background_colour(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N, channels)``: each image's mean over its background pixels (label 0)."""
    background = (labels == 0).to(x.dtype)[:, None]
    return (x * background).sum(dim=(2, 3)) / background.sum(dim=(2, 3)).clamp_min(1.0)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode inside the block (no dropout, BatchNorm statistics stay put),
    each restored to its own mode after (a stage may hold some norms in eval mode)."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)
