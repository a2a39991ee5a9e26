"""``train.class_weights=balanced``: weigh each training sample's cross-entropy by its class's
inverse frequency, so a rare class counts as much as a common one in the loss.

The weights are scikit-learn's ``class_weight="balanced"``: ``w_c = n / (k * n_c)`` for the
``k`` classes present in the training split (``n_c`` rows of class ``c``, ``n`` in all; a class
without training rows weighs 0). Their mean over the training rows is 1, so the loss keeps its
scale. Each data-parallel rank counts its own shard and the counts are summed over the ranks,
so every rank uses the weights of the whole split.
"""

from __future__ import annotations

import numpy as np
import torch

from components.training.steps import all_reduce


def balanced_weights(counts) -> torch.Tensor:
    """``(C,)`` float32 weights ``n / (k * n_c)`` from the per-class row counts ``counts``."""
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.float()


def shard_class_weights(labels, num_classes: int, device: torch.device) -> torch.Tensor:
    """:func:`balanced_weights` of the whole training split on ``device``, from this rank's
    shard ``labels`` with the counts summed over every data-parallel rank."""
    counts = torch.bincount(torch.as_tensor(labels).long().cpu(), minlength=num_classes)
    counts = all_reduce(counts.to(device=device, dtype=torch.float64))
    return balanced_weights(counts.cpu()).to(device)


def weights_line(counts, class_names) -> str:
    """``cat 0.625 (32 rows), dog 2.5 (8 rows)``: each class's balanced weight and row count."""
    weights = balanced_weights(counts).tolist()
    return ", ".join(
        f"{name} {weight:.3g} ({int(n)} rows)"
        for name, weight, n in zip(class_names, weights, np.asarray(counts), strict=True)
    )
