"""What a sparse dictionary is judged by: the loss recovered when spliced in, its features'
top-activating inputs, their localisation on part masks, and transcoders' weights-based circuit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.explain.checks.sae.dictionary import SparseDictionary
from components.explain.checks.sae.sites import Site, spliced


@torch.no_grad()
def model_loss(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Mean cross-entropy of ``model``'s logits on ``(x, y)``."""
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = model(torch.from_numpy(x[start : start + batch_size])).logits
        target = torch.from_numpy(y[start : start + batch_size])
        total += float(F.cross_entropy(logits, target, reduction="sum"))
    return total / len(x)


def spliced_loss(model, site: Site, replace: Callable, x, y) -> float:
    """The model's loss with the site's output replaced by ``replace(input_rows, output_rows)``."""
    with spliced(site, replace):
        return model_loss(model, x, y)


def replacement(kind: str, dictionary: SparseDictionary) -> Callable:
    """The splice of a dictionary: an SAE reconstructs the outputs, a transcoder maps inputs."""
    if kind == "sae":
        return lambda _inputs, outputs: dictionary(outputs)
    return lambda inputs, _outputs: dictionary(inputs)


def zero_ablation(_inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """The baseline splice: the site's output set to zero."""
    return torch.zeros_like(outputs)


def loss_recovered(clean: float, ablated: float, patched: float) -> float:
    """Fraction of the loss recovered (Bricken et al.): 1 when the splice is as good as the
    model, 0 when it is as bad as zero-ablating the layer."""
    gap = ablated - clean
    return float((ablated - patched) / gap) if abs(gap) > 1e-12 else float("nan")


def per_sample_max(activations: np.ndarray, rows_per_sample: int) -> np.ndarray:
    """``(samples, features)``: each feature's largest activation over a sample's rows."""
    width = activations.shape[1]
    return activations.reshape(-1, rows_per_sample, width).max(axis=1)


def top_features(activations: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` alive features with the largest mean activation, largest first."""
    mean = activations.mean(axis=0)
    order = np.argsort(-mean, kind="stable")
    return order[mean[order] > 0][:count]


def top_inputs(sample_max: np.ndarray, features: np.ndarray, count: int) -> np.ndarray:
    """``(features, count)``: per feature the samples it fires on most, strongest first."""
    return np.argsort(-sample_max[:, features], axis=0, kind="stable")[:count].T


def part_purity(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per feature, the largest share of its activation mass that falls on one part.

    Args:
        maps: ``(samples, features, h, w)`` non-negative activation maps.
        masks: ``(samples, H, W)`` part label maps (0: background, ``k``: part ``k``);
            maps are upsampled (nearest) to ``(H, W)``.

    Returns:
        ``(features,)``: ``max_k sum(a * [mask == k]) / sum(a)`` over all samples (NaN for a
        feature that never fires). 1 when a feature fires only on one part; a feature that
        fires everywhere scores the largest part's share of the image.
    """
    up = F.interpolate(torch.from_numpy(maps).float(), size=masks.shape[1:], mode="nearest")
    up = up.numpy()
    labels = [k for k in np.unique(masks) if k != 0]
    total = up.sum(axis=(0, 2, 3))
    per_part = np.stack(
        [(up * (masks == k)[:, None].astype(np.float32)).sum(axis=(0, 2, 3)) for k in labels]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, per_part.max(axis=0) / total, np.nan)


def circuit_weights(earlier: SparseDictionary, later_encoder: torch.Tensor) -> np.ndarray:
    """Dunefsky et al.'s input-invariant term: ``(earlier features, later units)``, the dot
    product of each earlier transcoder feature's decoder vector (in raw output units) with each
    later unit's encoder row, so the later unit's pre-activation gains ``f_i(x) * w_ij`` from
    feature ``i``. ``later_encoder`` is a later transcoder's ``W_enc / in_scale`` or a Linear's
    weight (e.g. the class logits)."""
    decoder = earlier.decoder.weight.detach() * earlier.out_scale  # (d_out, width)
    return (later_encoder.detach() @ decoder).T.numpy()


def encoder_in_raw_units(dictionary: SparseDictionary) -> torch.Tensor:
    """A transcoder's encoder acting on raw (unscaled) inputs: ``W_enc / in_scale``."""
    return dictionary.encoder.weight.detach() / dictionary.in_scale
