"""Saliency maps of a class, upsampled to the input, for weakly-supervised segmentation.

Three kinds of map, each ``(N, H, W)`` at the input's resolution:

* a model's own **class-evidence map** (:func:`evidence_maps`): for part-prototype models
  (ProtoPNet, ST-ProtoPNet) ``sum_p max(w[c, p], 0) * sim_p(h, w)``, every prototype's
  similarity map weighted by its positive last-layer connection to class ``c`` (the negative
  connections, -0.5 to other classes' prototypes at initialisation, are evidence *against*
  ``c``, and would cancel the map wherever any other prototype matches); for the ``cnn``
  baseline (conv blocks, flatten, linear) and ``resnet`` (trunk, global average pool, linear)
  the CAM of Zhou et al. (2016), each location's share of the class logit,
  ``sum_k W[c, k, h, w] f_k(h, w)``: over the grid these shares and the bias add up to the
  logit exactly (for ``resnet`` the weight is the same everywhere, divided by the grid size);
* **Integrated Gradients** (:func:`ig_maps`): ``|IG|`` summed over the channels;
* either of them of a freshly initialised network, as the baseline.

:func:`unit_maps` clamps negative evidence to 0 (as the brain-tumour paper's post-processing
suppresses the negative heatmap) and maps each map's range to ``[0, 1]`` (a prototype's
similarity has a floor well above 0 everywhere), so one threshold grid fits every kind.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from components.evaluation.analyses import has_activation_maps
from components.evaluation.predict import eval_mode
from components.explain.posthoc.methods import attribute
from components.models.cnn import CNN
from components.models.resnet import TrunkClassifier

BATCH = 128


def evidence_kind(model: nn.Module) -> str | None:
    """What the model's own class-evidence map is called, or None when it has none."""
    if has_activation_maps(model):
        return "prototype evidence"
    if isinstance(model, CNN | TrunkClassifier):
        return "CAM"
    return None


def predicted_classes(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The model's predicted class of each input (the class whose map segments it)."""
    with eval_mode(model), torch.no_grad():
        return np.concatenate(
            [
                model(torch.as_tensor(x[i : i + BATCH])).logits.argmax(1).numpy()
                for i in range(0, len(x), BATCH)
            ]
        )


def evidence_maps(model: nn.Module, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each input's class-evidence map for its class in ``classes``, upsampled to ``(H, W)``.

    Raises:
        TypeError: the model has no class-evidence map (:func:`evidence_kind` is None).
    """
    if evidence_kind(model) is None:
        raise TypeError(f"{type(model).__name__} has no class-evidence map")
    size = tuple(x.shape[-2:])
    chunks = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(x), BATCH):
            batch = torch.as_tensor(x[i : i + BATCH])
            target = torch.as_tensor(classes[i : i + BATCH], dtype=torch.long)
            grid = grid_evidence(model, batch, target)[:, None]
            up = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
            chunks.append(up[:, 0].numpy())
    return np.concatenate(chunks)


def grid_evidence(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N, h, w)`` evidence for each row's ``target`` class on the model's latent grid."""
    if has_activation_maps(model):
        weights = model.class_weights()[target].clamp(min=0)  # (N, P)
        return (weights[:, :, None, None] * model.activation_maps(x)).sum(1)
    features = model.features(x)  # (N, K, h, w)
    linear = model.head[-1]
    if isinstance(model, TrunkClassifier):
        weights = linear.weight[target][:, :, None, None] / features[0, 0].numel()
    else:
        weights = linear.weight.reshape(-1, *features.shape[1:])[target]
    return (weights * features).sum(1)


def ig_maps(model: nn.Module, x: np.ndarray, classes: np.ndarray, steps: int) -> np.ndarray:
    """``|IG|`` of each input's class in ``classes``, summed over channels: ``(N, H, W)``."""
    attributions = attribute(model, x, "ig", target=classes, num_samples=steps)
    return np.abs(attributions).sum(axis=1)


def unit_maps(maps: np.ndarray) -> np.ndarray:
    """Maps with negative values clamped to 0, then each scaled from its minimum (0) to its
    maximum (1); a constant map becomes all zeros, so no threshold in ``(0, 1)`` marks any
    pixel of it."""
    positive = np.clip(np.asarray(maps, dtype=np.float64), 0.0, None)
    flat = positive.reshape(len(positive), -1)
    low, span = flat.min(axis=1), np.ptp(flat, axis=1)
    scaled = (positive - low[:, None, None]) / np.where(span > 0, span, 1.0)[:, None, None]
    return np.where(span[:, None, None] > 0, scaled, 0.0)
