"""X-NeSyL's SHAP-Backprop: explanation-guided training against a knowledge graph of parts.

Díaz-Rodríguez et al., "EXplainable Neural-Symbolic Learning (X-NeSyL) methodology to fuse deep
learning representations with expert knowledge graphs: the MonuMAI cultural heritage use case",
Information Fusion 2022; reference code github.com/JulesSanchez/X-NeSyL (``train_with_shap.py``,
``utils/knowledge_graph.py``: ``compare_shap_and_KG``, ``reduce_shap``), read and followed.

For a sample of class ``c`` with part-level SHAP values ``s_p`` (for class ``c``'s output) and
the graph's signs ``g_pc`` (``+1``: part ``p`` belongs to ``c``, ``-1``: it does not), the
misattribution is ``m = min_p min(0, s_p * g_pc)`` (products above ``-threshold`` count as 0):
a part outside the class that pushes the class up, or a part of the class that pushes it down.
The sample's loss is multiplied by ``exp(-h * m)`` (exponential, the reference's default) or
``1 - h * m`` (linear), so a sample the model explains against the graph weighs more; a
sample in agreement keeps weight 1 (``instance_level`` weighting, ``h = 1``).

Departures: the reference trains a detector and explains a separate classifier over detected
part counts, computing SHAP once per epoch for the whole training set; here one image classifier
is trained and explained, and the SHAP values are the exact Shapley values of its class
probabilities over the parts present in each image (removal by background colour:
:mod:`components.training.xnesyl_shap`), computed per batch with the current weights.
Cost: ``2^m`` forward passes without gradient per explained sample (``m <= 4`` on the default
``parts`` data); ``train.xnesyl.samples`` explains only the first ``k`` samples of each shuffled
batch (the rest keep weight 1). The weight multiplies the model's cross-entropy term(s) per
sample (:meth:`~components.models.base.SennModel.weighted_samples`), not the prototype models'
regularisers. The issue asks for the predicted class; the reference code uses the label (its
predicted-class line is commented out): ``train.xnesyl.target`` offers both, ``label`` default.
Part masks must align with the training rows, so only array datasets with masks (the ``parts``
source) are supported, not augmented image folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from components.data.reader import load_meta, read_masks
from components.training.config import TrainConfig
from components.training.steps import all_reduce
from components.training.xnesyl_config import XNeSyLConfig
from components.training.xnesyl_graph import KnowledgeGraph, shap_ged
from components.training.xnesyl_shap import part_shapley


def misattribution(shap: torch.Tensor, signs: torch.Tensor, target: torch.Tensor, threshold=0.0):
    """The reference's ``compare_shap_and_KG`` reduced by ``min``: ``(N,)`` values ``<= 0``.

    Args:
        shap: ``(N, C, P)`` part SHAP values.
        signs: ``(C, P)`` graph signs (``KnowledgeGraph.signs``).
        target: ``(N,)`` the class each sample is checked for.
        threshold: products above ``-threshold`` are not misattributions.
    """
    rows = torch.arange(len(target), device=shap.device)
    contrib = shap[rows, target] * signs.to(shap.device)[target]
    contrib = torch.where(contrib > -threshold, torch.zeros_like(contrib), contrib)
    return contrib.min(dim=1).values


def misattribution_weight(m: torch.Tensor, weighting: str = "exponential", h: float = 1.0):
    """The reference's ``reduce_shap``: ``exp(-h m)`` or ``1 - h m``; 1 where ``m == 0``."""
    return torch.exp(-h * m) if weighting == "exponential" else 1.0 - h * m


class XNeSyLWeights:
    """Each training batch's per-sample loss weights, and the epoch's alignment figures.

    Called by ``train_epoch`` with ``(model, x, y, ids)`` before the batch's forward.

    Args:
        graph: the knowledge graph.
        masks: uint8 ``(N_train, H, W)`` part label maps of the train split, by global row id.
        settings: ``train.xnesyl``.
    """

    def __init__(self, graph: KnowledgeGraph, masks: np.ndarray, settings: XNeSyLConfig) -> None:
        self.graph, self.settings = graph, settings
        self.masks = torch.as_tensor(masks)
        self.signs = graph.signs
        self._sums = torch.zeros(4, dtype=torch.float64)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids) -> torch.Tensor:
        """``(N,)`` weights on ``x``'s device: 1 for samples not explained this batch."""
        k = len(x) if self.settings.samples == 0 else min(self.settings.samples, len(x))
        labels = self.masks[torch.as_tensor(ids[:k]).cpu()]
        shap, probs = part_shapley(model, x[:k], labels, len(self.graph.parts))
        target = y[:k] if self.settings.target == "label" else probs.argmax(dim=1)
        m = misattribution(shap, self.signs, target, self.settings.threshold)
        explained = misattribution_weight(m, self.settings.weighting, self.settings.h)
        weights = torch.ones(len(x), device=x.device)
        weights[:k] = explained.to(x.device)
        ged = shap_ged(shap, self.graph.edges, self.settings.ged_threshold)
        self._sums += torch.tensor(
            [k, float(explained.sum()), float((m < 0).sum()), float(ged.sum())],
            dtype=torch.float64,
        )
        return weights

    def epoch_metrics(self, device: torch.device) -> dict:
        """The epoch's mean weight, misattributed share and SHAP-GED over explained samples
        (summed over data-parallel ranks: every rank must call it); resets the sums."""
        n, weight, wrong, ged = all_reduce(self._sums.to(device)).tolist()
        self._sums.zero_()
        n = max(n, 1.0)
        return {
            "xnesyl_weight": weight / n,
            "xnesyl_misattributed": wrong / n,
            "xnesyl_shap_ged": ged / n,
            "xnesyl_weighting": self.settings.weighting,
        }


def check_xnesyl(dataset_path: str | Path, cfg: TrainConfig, model: nn.Module | None = None):
    """Raise ``ValueError`` if ``train.xnesyl`` cannot run on this dataset and model."""
    if not cfg.xnesyl.enabled:
        return
    if cfg.final_layer == "boosted":
        raise ValueError("train.xnesyl cannot train a boosted final layer (train.final_layer)")
    meta = load_meta(dataset_path)
    if meta.is_image:
        raise ValueError(
            "train.xnesyl needs part masks aligned with the training rows: an array dataset "
            "with masks (the parts source); image folders are augmented and carry no masks"
        )
    KnowledgeGraph.from_meta(meta, cfg.xnesyl.graph)
    if model is not None:
        reason = getattr(model, "soft_targets_refusal", None)
        if reason is not None or not getattr(model, "supervised", True):
            raise ValueError(
                f"train.xnesyl weights the cross-entropy per sample; model "
                f"{type(model).__name__} has none: {reason or 'it is unsupervised'}"
            )


def xnesyl_weights(dataset_path: str | Path, cfg: TrainConfig) -> XNeSyLWeights | None:
    """The SHAP-Backprop hook for a worker training on ``dataset_path`` (None when off)."""
    if not cfg.xnesyl.enabled:
        return None
    check_xnesyl(dataset_path, cfg)
    graph = KnowledgeGraph.from_meta(load_meta(dataset_path), cfg.xnesyl.graph)
    return XNeSyLWeights(graph, read_masks(dataset_path, "train"), cfg.xnesyl)
