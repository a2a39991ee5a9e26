"""Post-hoc explanations of any model, scored and ranked: "which explanation should I trust?"

Every configured method explains the same held-out samples; every explanation is scored with the
same metrics (faithfulness, robustness, complexity, ground truth where part masks exist), all
removing features through one operator; the chooser ranks the methods by the configured
faithfulness metric with paired bootstrap confidence intervals (Han, Srinivas & Lakkaraju 2022:
no method is best everywhere, so choose by measured faithfulness for this model and data). A
global surrogate tree and SP-LIME's representative samples summarise the model as a whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from components.evaluation.explanation_chooser import METRICS, rank_methods
from components.evaluation.explanation_quality import (
    attribution_entropy,
    completeness_gap,
    mask_localisation,
    sparseness,
)
from components.evaluation.explanation_robustness import ris, sensitivity_max
from components.evaluation.faithfulness import (
    Removal,
    deletion_auc,
    fidelity,
    infidelity,
    insertion_auc,
    mean_score,
    pgi,
    pgu,
)
from components.evaluation.predict import predict_logits
from components.explain.config import ExplainConfig
from components.explain.methods import attribute
from components.explain.sp_lime import submodular_pick
from components.explain.surrogate import default_feature_names, fit_global_surrogate

LABELS = {
    "ig": "Integrated Gradients",
    "gradients": "Vanilla Gradients",
    "gradient_x_input": "Gradient x Input",
    "smoothgrad": "SmoothGrad",
    "occlusion": "Occlusion",
    "lime": "LIME",
    "c_lime": "C-LIME",
    "kernel_shap": "KernelSHAP",
}
SAMPLING_METHODS = ("lime", "c_lime", "kernel_shap")
# Each "explain perturbed inputs again" metric costs this many re-explanations per sample.
ROBUSTNESS_PERTURBATIONS = 5

Attribute = Callable[[str, np.ndarray], np.ndarray]


def local_attribute(model: nn.Module, config: ExplainConfig) -> Attribute:
    """``attribute(method, x)`` with the config's sample counts, in this process."""

    def run(method: str, x: np.ndarray) -> np.ndarray:
        samples = config.perturbation_samples if method in SAMPLING_METHODS else None
        return attribute(model, x, method, num_samples=samples, seed=config.seed)

    return run


def explain_post_hoc(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    config: ExplainConfig,
    num_shown: int,
    masks: np.ndarray | None = None,
    attribute_fn: Attribute | None = None,
    surrogate_data: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Explain ``x`` with every method, score, rank, and summarise the model.

    Args:
        model: a trained model (any :class:`~components.models.base.SennModel` or module).
        x: ``(N, *feature_shape)`` held-out samples (standardised).
        y: their labels.
        config: the explain stage's settings (methods, metric settings, seed).
        num_shown: how many of the samples the report shows.
        masks: ``(N, H, W)`` ground-truth part masks, if the data has them.
        attribute_fn: computes ``(method, x) -> attributions`` (e.g. fanned out over Ray);
            default :func:`local_attribute`.
        surrogate_data: ``(fit, holdout)`` inputs for the global surrogate (e.g. the train and
            test splits); default: ``x``, a quarter held out.

    Returns:
        The report's ``post_hoc`` dict (see ``components.report.posthoc_section``).
    """
    model = model.eval()
    attribute_fn = attribute_fn or local_attribute(model, config)
    attributions, timings = {}, {}
    for method in config.methods:
        start = time.perf_counter()
        attributions[method] = attribute_fn(method, x)
        timings[method] = time.perf_counter() - start
    scores = {m: _scores(model, x, a, config, masks) for m, a in attributions.items()}
    robustness = _robustness(model, x, config)
    metrics = {m: {**_means(scores[m]), **robustness.get(m, {})} for m in config.methods}
    ranking = _ranking(scores, config)
    predicted = predict_logits(model, x).argmax(1).numpy()
    return {
        "methods": list(config.methods),
        "labels": {m: LABELS[m] for m in config.methods},
        "sample_indices": list(range(num_shown)),
        "inputs": x[:num_shown],
        "predicted": predicted[:num_shown].tolist(),
        "true": np.asarray(y[:num_shown]).tolist(),
        "attributions": {m: a[:num_shown] for m, a in attributions.items()},
        "metrics": metrics,
        "ranking": ranking,
        "recommended": ranking["rows"][0]["method"],
        "surrogate": _surrogate(model, surrogate_data or (x, None), config),
        "sp_lime": _sp_lime(attributions),
        "timings": timings,
        "num_samples": len(x),
    }


def _num_features(x: np.ndarray) -> int:
    """Features as the metrics count them: pixels for images, columns for tabular data."""
    return int(np.prod(x.shape[2:])) if x.ndim == 4 else int(np.prod(x.shape[1:]))


def _scores(model, x, attr, config: ExplainConfig, masks) -> dict[str, np.ndarray]:
    """Per-sample scores of one method's attributions."""
    pixel_level = x.ndim == 4
    k = max(1, round(config.top_k_fraction * _num_features(x)))
    common = {"removal": Removal(config.removal), "seed": config.seed}
    pixels = {"pixel_level": pixel_level}
    fid = fidelity(model, x, attr, k, **common, **pixels)
    scores = {
        "pgi": pgi(model, x, attr, k, **common, **pixels),
        "pgu": pgu(model, x, attr, k, **common, **pixels),
        **fid,
        "deletion_auc": deletion_auc(model, x, attr, **common, **pixels),
        "insertion_auc": insertion_auc(model, x, attr, **common, **pixels),
        "infidelity": infidelity(model, x, attr, **common),
        "infidelity_gaussian": infidelity(model, x, attr, perturbation="gaussian", **common),
        "sparseness": sparseness(attr),
        "entropy": attribution_entropy(attr),
        "completeness_gap": completeness_gap(model, x, attr)[0],
    }
    if masks is not None:
        scores["mask_localisation"] = mask_localisation(attr, masks)
    return scores


def _means(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: mean_score(values) for name, values in scores.items()}


def _robustness(model, x: np.ndarray, config: ExplainConfig) -> dict[str, dict[str, float]]:
    """Sensitivity-max and relative input stability: each re-explains perturbed inputs, so
    they run on the first ``robustness_samples`` samples only."""
    subset = torch.as_tensor(x[: config.robustness_samples])
    common = {"seed": config.seed}
    out = {}
    for method in config.methods:
        explain_fn = _explainer(model, method, config)
        sens = sensitivity_max(
            explain_fn, subset, n_perturb_samples=ROBUSTNESS_PERTURBATIONS, **common
        )
        stability = ris(
            model, subset, explain_fn, num_perturbations=ROBUSTNESS_PERTURBATIONS, **common
        )
        out[method] = {"sensitivity_max": mean_score(sens), "ris": mean_score(stability)}
    return out


def _explainer(model, method: str, config: ExplainConfig):
    """``explain_fn(x, target=None)`` for the robustness metrics."""
    samples = config.perturbation_samples if method in SAMPLING_METHODS else None

    def explain_fn(inputs: torch.Tensor, target=None) -> torch.Tensor:
        attr = attribute(
            model, inputs.detach(), method, target=target, num_samples=samples, seed=config.seed
        )
        return torch.as_tensor(attr)

    return explain_fn


def _ranking(scores: dict[str, dict[str, np.ndarray]], config: ExplainConfig) -> dict:
    metric = config.rank_by
    higher = METRICS[metric][1]
    key = {"deletion": "deletion_auc", "insertion": "insertion_auc"}.get(metric, metric)
    rows = rank_methods(
        {m: s[key] for m, s in scores.items()}, higher_is_better=higher, seed=config.seed
    )
    return {
        "metric": key,
        "higher_is_better": higher,
        "num_samples": rows[0]["num_samples"] if rows else 0,
        "confidence": 0.95,
        "rows": rows,
    }


def _surrogate(model, data: tuple[np.ndarray, np.ndarray | None], config: ExplainConfig) -> dict:
    x, holdout = data
    names = default_feature_names(tuple(x.shape[1:]))
    surrogate = fit_global_surrogate(
        model,
        x,
        x_holdout=holdout,
        top_k=min(config.surrogate_top_k, len(names)),
        max_depth=config.surrogate_depth,
        feature_names=names,
        seed=config.seed,
    )
    return surrogate.summary()


def _sp_lime(attributions: dict[str, np.ndarray]) -> dict | None:
    method = "lime" if "lime" in attributions else next(iter(attributions), None)
    if method is None:
        return None
    weights = np.abs(attributions[method].reshape(len(attributions[method]), -1))
    pick = submodular_pick(weights, budget=min(3, len(weights)), top_k=min(10, weights.shape[1]))
    return {
        "method": method,
        "picked": [int(i) for i in pick.indices],
        "coverage": [float(c) for c in pick.coverage_fraction],
    }
