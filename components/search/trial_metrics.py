"""The metrics a sweep can rank trials by, and the extra ones a trial computes when asked.

Every trial of the pipeline's fit loop reports ``val_loss`` and ``val_accuracy``. A sweep whose
``search.metric`` or ``search.objectives`` name another metric of :data:`METRICS` has each trial
compute it at every report (each epoch), and only those it needs, as they cost time:

* ``val_ece``: top-label expected calibration error over the whole val split (Guo et al. 2017;
  :func:`components.evaluation.metrics.expected_calibration_error`, 15 bins). Lower is better.
* ``faithfulness``: a short explain pass: Gradient x Input attributions (Shrikumar et al. 2016;
  one backward pass) of the first :data:`EXPLAIN_SAMPLES` val images, scored by PGI, the
  prediction gap on important features (Agarwal et al. 2022, OpenXAI), as the post-hoc explain
  stage scores them with its defaults: the top quarter of the feature groups (per pixel on small
  inputs, patches on large images) replaced by the zero baseline. Higher is better: removing
  what the explanation marks moves the prediction more.
* ``prototype_consistency``: the share of consistent prototypes (Huang et al., ICCV 2023;
  :func:`components.evaluation.prototype_quality.consistency_score`) on the first
  :data:`CONSISTENCY_SAMPLES` val images; only for part-prototype models (``activation_maps``)
  on a dataset with part masks (``data=parts``). Higher is better.

``remaining`` (the share of the prunable weights a lottery ticket keeps; lower is sparser) is
reported by the trials of a pruning sweep (:mod:`components.search.trial_prune`) only, so
``search.objectives=[val_accuracy,remaining]`` traces accuracy against sparsity.

The fixed val subsets are read once per process (a reused trial actor reads them once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from components.data.reader import load_meta, read_masks, read_split
from components.evaluation.metrics import expected_calibration_error
from components.evaluation.predict import predict_batches

# The explain and analysis modules (captum, scikit-learn) are imported by the functions that use
# them: every trial imports this module, few sweeps rank by what needs them.

# name -> the direction that is better
METRICS = {
    "val_loss": "min",
    "val_accuracy": "max",
    "val_ece": "min",
    "faithfulness": "max",
    "prototype_consistency": "max",
    "remaining": "min",
}
REPORTED = ("val_loss", "val_accuracy")  # by the fit loop itself
LOTTERY = ("remaining",)  # by pruning trials only
EXTRA = tuple(name for name in METRICS if name not in (*REPORTED, *LOTTERY))
EXPLAIN_SAMPLES = 32
EXPLAIN_METHOD = "gradient_x_input"
CONSISTENCY_SAMPLES = 128


def metric_mode(name: str) -> str:
    """``min`` or ``max``: the better direction of ``name``; ``ValueError`` listing the metrics
    a sweep can rank by when it is not one of them."""
    if name not in METRICS:
        raise ValueError(f"{name!r} is not a reported metric; choose one of {list(METRICS)}")
    return METRICS[name]


def extra_names(names: Iterable[str]) -> tuple[str, ...]:
    """Those of ``names`` a trial computes beyond the fit loop's own, in :data:`METRICS` order."""
    wanted = set(names)
    return tuple(name for name in EXTRA if name in wanted)


def check_applicable(names: Iterable[str], model, dataset_path: str | Path) -> None:
    """``ValueError`` when a metric of ``names`` cannot be computed for ``model`` on the
    dataset: ``prototype_consistency`` needs part prototypes and part masks."""
    if "prototype_consistency" not in set(names):
        return
    from components.evaluation.analyses import has_activation_maps

    if not has_activation_maps(model):
        raise ValueError(
            f"prototype_consistency needs a part-prototype model (one with activation maps, e.g. "
            f"protopnet); {type(model).__name__} has none"
        )
    if "parts" not in load_meta(dataset_path).raw:
        raise ValueError(
            "prototype_consistency needs a dataset with ground-truth part masks (data=parts); "
            f"{dataset_path} has none"
        )


def extra_metrics(
    names: Sequence[str], model: torch.nn.Module, val: Iterable, dataset_path: str | Path
) -> dict[str, float]:
    """The extra metrics of ``names`` (others are ignored) for ``model`` at a reporting point.

    Args:
        names: the metrics the sweep ranks by (:func:`extra_names` picks the extra ones).
        model: the trial's model, on its training device.
        val: the trial's val batches, ``(x, y)`` pairs (for ``val_ece``).
        dataset_path: the local dataset folder (the fixed val subsets).
    """
    values = {}
    for name in extra_names(names):
        values[name] = float(_COMPUTE[name](model, val, str(dataset_path)))
    return values


def val_ece(model: torch.nn.Module, val: Iterable, dataset_path: str = "") -> float:
    """Top-label expected calibration error of ``model`` over the ``val`` batches."""
    device = next(model.parameters()).device
    logits, y = predict_batches(model, val, device=device)
    return expected_calibration_error(torch.softmax(logits, dim=1).numpy(), y)


def faithfulness(model: torch.nn.Module, val: Iterable, dataset_path: str) -> float:
    """Mean PGI of Gradient x Input on the first :data:`EXPLAIN_SAMPLES` val images."""
    x, _ = _val_subset(dataset_path, EXPLAIN_SAMPLES)
    return explanation_faithfulness(model, x)


def explanation_faithfulness(model: torch.nn.Module, x: np.ndarray) -> float:
    """Mean PGI of Gradient x Input attributions of ``x``'s predicted classes, over the explain
    stage's default feature groups, top fraction and removal (:class:`ExplainConfig`)."""
    from components.evaluation.faithfulness import mean_score, pgi
    from components.explain.config import ExplainConfig
    from components.explain.posthoc.methods import attribute
    from components.perturbation.groups import group_labels, num_groups

    config = ExplainConfig()
    attributions = attribute(model, x, EXPLAIN_METHOD, seed=config.seed)
    groups = group_labels(x, config.feature_groups, config.patch_size)
    k = max(1, round(config.top_k_fraction * num_groups(groups)))
    return mean_score(pgi(model, x, attributions, k, groups=groups, seed=config.seed))


def prototype_consistency(model: torch.nn.Module, val: Iterable, dataset_path: str) -> float:
    """Share of consistent prototypes on the first :data:`CONSISTENCY_SAMPLES` val images."""
    from components.evaluation.prototype_quality import consistency_score

    check_applicable(["prototype_consistency"], model, dataset_path)
    x, y = _val_subset(dataset_path, CONSISTENCY_SAMPLES)
    masks = _val_masks(dataset_path)[: len(y)]
    parts = load_meta(dataset_path).raw["parts"]
    return consistency_score(model, x, masks, y, part_names=parts)["score"]


@lru_cache(maxsize=4)
def _val_subset(dataset_path: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    return read_split(dataset_path, "val", limit=rows)


@lru_cache(maxsize=2)
def _val_masks(dataset_path: str) -> np.ndarray:
    return read_masks(dataset_path, "val")


_COMPUTE = {
    "val_ece": val_ece,
    "faithfulness": faithfulness,
    "prototype_consistency": prototype_consistency,
}
