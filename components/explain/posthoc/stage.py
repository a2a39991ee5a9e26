"""Post-hoc explanations of any model, scored and ranked: "which explanation should I trust?"

Every configured method explains the same held-out samples; every explanation is scored with the
same metrics (faithfulness, robustness, complexity, ground truth where part masks exist), all
removing features through one operator; the chooser ranks the methods by the configured
faithfulness metric with paired bootstrap confidence intervals (Han, Srinivas & Lakkaraju 2022:
no method is best everywhere, so choose by measured faithfulness for this model and data). A
global surrogate tree and SP-LIME's representative samples summarise the model as a whole.

Cost. The removal-based methods (LIME, C-LIME, KernelSHAP, Occlusion), the metrics that remove
features and the surrogate's probing all work on the configured feature groups
(:func:`~components.perturbation.groups.group_labels`: patches or superpixels on large
images), so they cost a model call per group, not per pixel, batched. Given a budget in seconds,
the stage first explains and scores one sample per method (the pilot), then chooses the counts
that fit (:mod:`components.explain.posthoc.budget`), checks the clock before each robustness
method and the surrogate, and reports in ``result["budget"]`` what it chose, skipped and spent
per part.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
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
from components.explain.posthoc.budget import (
    RESERVE,
    Clock,
    Counts,
    UnitCosts,
    choose_counts,
    counts_of,
    fits,
    rows_in_memory,
    with_counts,
)
from components.explain.posthoc.methods import DEFAULT_NUM_SAMPLES, attribute
from components.explain.posthoc.sp_lime import submodular_pick
from components.explain.posthoc.surrogate import fit_global_surrogate
from components.perturbation.groups import (
    column_groups,
    feature_groups,
    group_labels,
    group_sums,
    num_groups,
)
from components.perturbation.removal import rows_per_call
from components.tensors import model_device

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
# The methods whose interpretable features are the feature groups (the others are per element).
GROUPED_METHODS = frozenset({"lime", "c_lime", "kernel_shap", "occlusion"})
# Each "explain perturbed inputs again" metric costs this many re-explanations per sample.
ROBUSTNESS_PERTURBATIONS = 5
# Per sample and method: the clean explanation, then each perturbed copy explained by both
# sensitivity-max and RIS, plus RIS's own clean explanation.
ROBUSTNESS_EXPLANATIONS = 2 * ROBUSTNESS_PERTURBATIONS + 2
PILOT_SHARE = 0.02  # a pilot call dearer than this share of the budget is not repeated
PILOT_SAMPLES = 16  # model calls per pilot explanation (IG steps, perturbations, noisy copies)
PILOT_BATCH = 4  # samples of the pilot, at most
# About the model calls of one pilot sample besides Occlusion's one per group: IG, SmoothGrad
# and the three sampling methods at PILOT_SAMPLES each (gradients cost two to three calls), the
# metrics' some seventy-five.
PILOT_CALLS_PER_SAMPLE = 250

# ``attribute_fn(method, x, groups, config) -> attributions shaped like x``
Attribute = Callable[[str, np.ndarray, Any, ExplainConfig], np.ndarray]
SurrogateData = tuple[np.ndarray, np.ndarray | None] | Callable[[int], tuple]


def attribute_with(
    model: nn.Module,
    method: str,
    x: Any,
    groups: Any,
    config: ExplainConfig,
    target: Any = None,
    calls: int | None = None,
) -> np.ndarray:
    """One method's attributions as the stage computes them: the config's perturbation count
    (sampling methods), ``groups`` as interpretable features (removal-based methods), its seed.
    ``calls`` overrides the model calls per explanation (the budget's pilot)."""
    samples = calls or (config.perturbation_samples if method in SAMPLING_METHODS else None)
    mask = groups if method in GROUPED_METHODS else None
    return attribute(
        model, x, method, target=target, num_samples=samples, feature_mask=mask, seed=config.seed
    )


def _model_calls(method: str, config: ExplainConfig) -> int | None:
    """Model calls per explanation of the methods whose cost is linear in them, else None."""
    if method in SAMPLING_METHODS:
        return config.perturbation_samples
    return DEFAULT_NUM_SAMPLES.get(method)


def local_attribute(model: nn.Module) -> Attribute:
    """``attribute_fn(method, x, groups, config)`` computed in this process."""

    def run(method: str, x: np.ndarray, groups: Any, config: ExplainConfig) -> np.ndarray:
        return attribute_with(model, method, x, groups, config)

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
    surrogate_data: SurrogateData | None = None,
    budget_s: float | None = None,
    feature_names: Sequence[str] | None = None,
    feature_units: tuple[Any, Any] | None = None,
    class_names: Sequence[str] | None = None,
    categorical: Mapping[str, tuple[str, str]] | None = None,
) -> dict:
    """Explain ``x`` with every method, score, rank, and summarise the model, within a budget.

    Args:
        model: a trained model (any :class:`~components.models.base.SennModel` or module).
        x: ``(N, *feature_shape)`` held-out samples (standardised); the first
            ``config.eval_samples`` (or fewer, to fit the budget) are explained.
        y: their labels.
        config: the explain stage's settings (methods, counts as upper bounds, groups, seed).
        num_shown: how many of the samples the report shows.
        masks: ``(N, H, W)`` ground-truth part masks, if the data has them.
        attribute_fn: computes ``(method, x, groups, config) -> attributions`` (e.g. fanned out
            over Ray); default :func:`local_attribute`.
        surrogate_data: ``(fit, holdout)`` inputs for the global surrogate, or a function
            ``rows -> (fit, holdout)`` that reads at most ``rows`` of each (so only the rows the
            budget affords are read); default: ``x``, a quarter held out.
        budget_s: seconds this call may take; None: no limit (the config's counts as given).
        feature_names, feature_units, class_names: what the global surrogate's rules call the
            features and classes, and the ``(mean, std)`` that write its thresholds in the
            user's units (flat features only; see
            :func:`~components.explain.posthoc.surrogate.fit_global_surrogate`).
        categorical: the features that one-hot encode a categorical column, by name
            (``column=word`` -> ``(column, word)``): the rules read ``column is word``.

    Returns:
        The report's ``post_hoc`` dict (see ``components.report.posthoc_section``), with
        ``budget`` (see :func:`budget_line`).
    """
    model = model.eval()
    rule_names = {
        "feature_names": feature_names,
        "feature_units": feature_units,
        "class_names": class_names,
        "categorical": categorical,
    }
    attribute_fn = attribute_fn or local_attribute(model)
    stage = _Stage(model, masks, attribute_fn, Clock(budget_s), rule_names)
    columns = column_groups(feature_names, categorical) if feature_names and categorical else None
    with stage.clock.part("feature groups"):
        groups = group_labels(
            x[: config.eval_samples], config.feature_groups, config.patch_size, columns
        )
    requested = _requested(config, x, surrogate_data)
    surrogate_data = (x, None) if surrogate_data is None else surrogate_data
    counts, costs, methods = stage.plan(x, groups, config, requested)
    config = with_counts(config, counts)
    n = counts.eval_samples
    x, y, groups = x[:n], np.asarray(y)[:n], _first(groups, n)
    attributions, timings, scores = stage.explain(methods, x, groups, config, costs)
    with stage.clock.part("ranking"):
        ranking = _ranking(scores, config)
        predicted = predict_logits(model, x).argmax(1).numpy()
    with stage.clock.part("sp_lime"):
        sp_lime = _sp_lime(attributions, groups)
    surrogate = stage.surrogate(surrogate_data, x, groups, config, counts, costs)
    if surrogate is None:
        counts = replace(counts, surrogate_probes=0, surrogate_rows=0)
    robustness, robust_count = stage.robustness(x, groups, config, timings, requested)
    counts = replace(counts, robustness_samples=robust_count)
    metrics = {m: {**_means(scores[m]), **robustness.get(m, {})} for m in attributions}
    shown = min(num_shown, n)
    return {
        "methods": list(attributions),
        "labels": {m: LABELS[m] for m in attributions},
        "sample_indices": list(range(shown)),
        "inputs": x[:shown],
        "predicted": predicted[:shown].tolist(),
        "true": y[:shown].tolist(),
        "attributions": {m: a[:shown] for m, a in attributions.items()},
        "metrics": metrics,
        "ranking": ranking,
        "recommended": ranking["rows"][0]["method"],
        "surrogate": surrogate,
        "sp_lime": sp_lime,
        "timings": timings,
        "num_samples": n,
        "budget": stage.summary(requested, counts, costs, groups, config),
    }


def budget_line(budget: dict) -> str:
    """One line for the log: the budget, what was spent, the counts chosen, what was skipped."""
    chosen, requested = budget["chosen"], budget["requested"]
    limit = "no limit" if budget["budget_s"] is None else f"{budget['budget_s']:.1f} s"
    counts = ", ".join(f"{k} {chosen[k]}/{requested[k]}" for k in chosen)
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in budget["seconds"].items())
    skipped = "; skipped: " + "; ".join(budget["skipped"]) if budget["skipped"] else ""
    return f"budget {limit}, spent {budget['spent_s']:.1f} s ({parts}); {counts}{skipped}"


class _Stage:
    """The parts of the post-hoc stage that the budget times, plans and may skip."""

    def __init__(
        self,
        model: nn.Module,
        masks,
        attribute_fn: Attribute,
        clock: Clock,
        rule_names: dict | None = None,
    ) -> None:
        self.model, self.masks, self.attribute_fn, self.clock = model, masks, attribute_fn, clock
        self.scale = 1.0  # chosen / configured perturbation samples
        self.drift = 1.0  # how far the explained methods overran the pilot's estimates (>= 1)
        # how the surrogate's rules name features (and their units) and classes
        self.rule_names = rule_names or {}

    def plan(self, x, groups, config: ExplainConfig, requested: Counts):
        """The counts that fit the budget, the pilot's unit costs, the methods still in."""
        if self.clock.budget_s is None:
            return requested, None, list(config.methods)
        with self.clock.part("pilot"):
            costs = self._pilot(x, groups, config)
        sampling = frozenset(m for m in costs.attribution if m in SAMPLING_METHODS)
        seconds = self.clock.remaining() - RESERVE * self.clock.budget_s
        width = _surrogate_width(config, groups, x.shape[1:])
        counts = choose_counts(requested, costs, seconds, sampling=sampling, surrogate_groups=width)
        self.scale = counts.perturbation_samples / requested.perturbation_samples
        return counts, costs, list(costs.attribution)

    def _pilot(self, x, groups, config: ExplainConfig) -> UnitCosts:
        """Unit costs from one batch predicted, then a few samples (:meth:`_pilot_samples`)
        explained by each method and scored.

        Each method runs here, in this process, at no more than :data:`PILOT_SAMPLES` model
        calls per explanation (IG steps, SmoothGrad copies, LIME / C-LIME / KernelSHAP
        perturbations), and its time is scaled up to the full count: the cost is linear in it
        plus a fixed part that the scaling overstates, which errs on the safe side; so does
        dividing a batch's time by its samples (the metrics, some fifty batched model calls,
        cost mostly per call on small inputs). A first call pays one-off costs (allocating
        large buffers, autograd, thread pools) that made some methods look five times dearer
        than they are on 224x224 images, so each unit is the faster of two calls unless the
        first alone took :data:`PILOT_SHARE` of the budget.
        """
        rows = x[
            : min(len(x), rows_per_call(x.shape[1:], PILOT_BATCH * 4, model_device(self.model)))
        ]
        forward = self._unit(predict_logits, self.model, rows)[0] / len(rows)
        count = self._pilot_samples(len(x), forward, num_groups(groups))
        batch, batch_groups = x[:count], _first(groups, count)
        attribution, first = {}, None
        for method in config.methods:
            if attribution and not self.clock.fits(0):
                self.clock.skip(f"{method} (the budget ran out while measuring the methods)")
                continue
            full = _model_calls(method, config)
            calls = None if full is None else min(full, PILOT_SAMPLES)
            with warnings.catch_warnings():
                # LIME's Lasso on 16 perturbations of more features need not converge; the
                # pilot only times it (its attributions are not used)
                warnings.simplefilter("ignore", ConvergenceWarning)
                seconds, result = self._unit(
                    attribute_with, self.model, method, batch, batch_groups, config, None, calls
                )
            attribution[method] = seconds / count * (1.0 if full is None else full / calls)
            first = result if first is None else first
        masks = None if self.masks is None else self.masks[:count]
        args = (self.model, batch, first, config, masks, batch_groups)
        metrics = self._unit(_scores, *args)[0] / count
        return UnitCosts(attribution, metrics, forward, ROBUSTNESS_EXPLANATIONS)

    def _pilot_samples(self, available: int, forward_row: float, groups: int) -> int:
        """Samples the pilot explains: :data:`PILOT_BATCH`, fewer when they would cost more
        than a twentieth of the budget (a 224x224 CNN on a CPU: about 20 ms per model call)."""
        calls = PILOT_CALLS_PER_SAMPLE + groups
        affordable = fits(0.05 * self.clock.budget_s, calls * forward_row)
        return max(1, min(available, PILOT_BATCH, affordable))

    def _unit(self, fn, *args):
        """``(seconds, result)`` of ``fn(*args)``: the faster of two calls when it is cheap."""
        seconds, result = _timed(fn, *args)
        if seconds < PILOT_SHARE * self.clock.budget_s:
            seconds = min(seconds, _timed(fn, *args)[0])
        return seconds, result

    def explain(self, methods, x, groups, config: ExplainConfig, costs):
        """Every method's attributions of ``x``, the seconds each took, and their scores.

        A method whose estimated cost no longer fits the budget is skipped (the first never);
        the estimates are scaled by how far the methods already run overran theirs, so a
        machine that got busier after the pilot does not overrun the budget method by method.
        """
        attributions, timings, scores = {}, {}, {}
        spent = estimated = 0.0
        masks = None if self.masks is None else self.masks[: len(x)]
        for method in methods:
            estimate = self._estimate(costs, method, len(x))
            if attributions and not self.clock.fits(estimate * self.drift):
                self.clock.skip(f"{method} (explained and scored)")
                continue
            start = time.perf_counter()
            with self.clock.part("attributions"):
                attributions[method] = self.attribute_fn(method, x, groups, config)
                timings[method] = time.perf_counter() - start
            with self.clock.part("metrics"):
                scores[method] = _scores(self.model, x, attributions[method], config, masks, groups)
            spent, estimated = spent + time.perf_counter() - start, estimated + estimate
            self.drift = max(1.0, spent / estimated) if estimated else 1.0
        return attributions, timings, scores

    def _per_sample(self, costs: UnitCosts, method: str) -> float:
        """Seconds to explain one sample with ``method`` at the chosen perturbations."""
        return costs.attribution[method] * (self.scale if method in SAMPLING_METHODS else 1.0)

    def _estimate(self, costs, method: str, count: int) -> float:
        """Seconds to explain and score ``count`` samples with ``method``; 0 without a budget."""
        return 0.0 if costs is None else count * (self._per_sample(costs, method) + costs.metrics)

    def robustness(self, x, groups, config, timings: dict, requested: Counts):
        """Sensitivity-max and relative input stability per method, last: each re-explains
        perturbed inputs, so they run on the first ``robustness_samples`` samples only. With a
        budget they take what is left: as many of the configured samples as fit by what the
        methods measurably took on ``x`` (more exact than the pilot), and a method is skipped
        when its own share no longer fits. Returns the scores per method and the count."""
        unit = {m: ROBUSTNESS_EXPLANATIONS * seconds / len(x) for m, seconds in timings.items()}
        count = config.robustness_samples
        if self.clock.budget_s is not None:
            left = self.clock.remaining() - RESERVE * self.clock.budget_s
            wanted = min(requested.robustness_samples, len(x))
            count = min(wanted, fits(left, sum(unit.values())))
        if count < requested.robustness_samples:
            wanted = requested.robustness_samples
            self.clock.skip(f"robustness on {wanted - count} of {wanted} samples")
        if count == 0:
            return {}, 0
        subset, subset_groups = torch.as_tensor(x[:count]), _first(groups, count)
        out = {}
        for method in timings:
            if self.clock.budget_s is not None and not self.clock.fits(unit[method] * count):
                self.clock.skip(f"robustness of {method}")
                continue
            with self.clock.part("robustness"):
                out[method] = _robustness(self.model, method, subset, subset_groups, config)
        return out, count

    def surrogate(self, data, x, groups, config, counts: Counts, costs) -> dict | None:
        """The global surrogate's summary, or None when it does not fit the budget: its estimate
        is scaled by how far the methods overran theirs, as theirs were."""
        width = _surrogate_width(config, groups, x.shape[1:])
        probes, rows = counts.surrogate_probes, counts.surrogate_rows
        estimate = 0.0 if costs is None else costs.surrogate(probes, rows, width) * self.drift
        if probes == 0 or not self.clock.fits(estimate):
            self.clock.skip("the global surrogate")
            return None
        with self.clock.part("surrogate"):
            fit, holdout = _surrogate_inputs(data, rows)
            labels = _surrogate_groups(config, groups, x.shape[1:])
            names = dict(self.rule_names)
            if labels is not None:  # groups: named by the boxes they fill, in the model's units
                names.update(feature_names=None, feature_units=None, categorical=None)
            surrogate = fit_global_surrogate(
                self.model,
                fit,
                x_holdout=holdout,
                top_k=min(config.surrogate_top_k, width),
                max_depth=config.surrogate_depth,
                groups=labels,
                probe_samples=probes,
                seed=config.seed,
                **names,
            )
        return surrogate.summary()

    def summary(self, requested: Counts, counts: Counts, costs, groups, config) -> dict:
        """``result["budget"]``: the limit, what was spent per part, chosen vs configured counts,
        what was skipped, the feature groups and the pilot's unit costs."""
        return {
            "budget_s": self.clock.budget_s,
            "spent_s": self.clock.elapsed(),
            "seconds": dict(self.clock.seconds),
            "requested": requested.as_dict(),
            "chosen": counts.as_dict(),
            "skipped": list(self.clock.skipped),
            "feature_groups": {
                "kind": config.feature_groups,
                "groups": num_groups(groups),
                "per_sample": len(groups) > 1,
                # a table's word columns, each one feature (fewer groups than features)
                **({"by_column": True} if _by_column(groups) else {}),
            },
            "unit_costs_s": None if costs is None else _unit_costs(costs),
        }


def _by_column(groups: torch.Tensor) -> bool:
    """Whether a table's features are grouped by column (fewer groups than features)."""
    return groups.ndim == 2 and num_groups(groups) < groups.shape[1]


def _timed(fn, *args) -> tuple[float, Any]:
    """``(seconds, result)`` of ``fn(*args)``."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def _requested(config: ExplainConfig, x: np.ndarray, data: SurrogateData | None) -> Counts:
    """The configured counts, bounded by the samples and rows there are and by memory."""
    counts = counts_of(config)
    if callable(data):  # a reader: the config's rows (the caller bounds them by the split)
        available = counts.surrogate_rows
    else:
        available = len(x) if data is None else len(data[0])
    rows = min(counts.surrogate_rows, rows_in_memory(x.shape[1:]), max(available, 2))
    eval_samples = min(counts.eval_samples, len(x))
    return Counts(
        eval_samples=eval_samples,
        robustness_samples=min(counts.robustness_samples, eval_samples),
        perturbation_samples=counts.perturbation_samples,
        surrogate_probes=counts.surrogate_probes,
        surrogate_rows=rows,
    )


def _first(groups: torch.Tensor, count: int) -> torch.Tensor:
    """The groups of the first ``count`` samples (shared groups stay as they are)."""
    return groups if len(groups) == 1 else groups[:count]


def _scores(model, x, attr, config: ExplainConfig, masks, groups) -> dict[str, np.ndarray]:
    """Per-sample scores of one method's attributions, over the feature groups."""
    k = max(1, round(config.top_k_fraction * num_groups(groups)))
    common = {"removal": Removal(config.removal), "seed": config.seed}
    grouped = {"groups": groups}
    scores = {
        "pgi": pgi(model, x, attr, k, **common, **grouped),
        "pgu": pgu(model, x, attr, k, **common, **grouped),
        **fidelity(model, x, attr, k, **common, **grouped),
        "deletion_auc": deletion_auc(model, x, attr, **common, **grouped),
        "insertion_auc": insertion_auc(model, x, attr, **common, **grouped),
        "infidelity": infidelity(model, x, attr, **common, **grouped),
        "infidelity_gaussian": infidelity(model, x, attr, perturbation="gaussian", **common),
        "sparseness": sparseness(attr, groups),
        "entropy": attribution_entropy(attr, groups),
        "completeness_gap": completeness_gap(model, x, attr)[0],
    }
    if masks is not None:
        scores["mask_localisation"] = mask_localisation(attr, masks)
    return scores


def _means(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: mean_score(values) for name, values in scores.items()}


def _robustness(model, method: str, subset: torch.Tensor, groups, config) -> dict[str, float]:
    """Sensitivity-max and relative input stability of one method on ``subset``."""
    explain_fn = _explainer(model, method, groups, config)
    common = {"seed": config.seed}
    sens = sensitivity_max(explain_fn, subset, n_perturb_samples=ROBUSTNESS_PERTURBATIONS, **common)
    stability = ris(model, subset, explain_fn, num_perturbations=ROBUSTNESS_PERTURBATIONS, **common)
    return {"sensitivity_max": mean_score(sens), "ris": mean_score(stability)}


def _explainer(model, method: str, groups, config: ExplainConfig):
    """``explain_fn(x, target=None)`` for the robustness metrics; per-sample groups
    (superpixels) are segmented again on the perturbed inputs, as the method would."""

    def explain_fn(inputs: torch.Tensor, target=None) -> torch.Tensor:
        labels = groups
        if len(groups) > 1 and method in GROUPED_METHODS:
            labels = group_labels(inputs, config.feature_groups, config.patch_size)
        return torch.as_tensor(
            attribute_with(model, method, inputs.detach(), labels, config, target)
        )

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


def _surrogate_groups(config: ExplainConfig, groups: torch.Tensor, shape) -> torch.Tensor | None:
    """The surrogate's features: the stage's groups, or the patch grid where those differ per
    sample (superpixels cannot be global features); None (every element) for ``none``, for
    groups of one element each, in order, and for tables (features named by the data, a word
    column's 0/1 features read as words)."""
    if config.feature_groups == "none" or len(tuple(shape)) == 1:
        return None
    if len(groups) > 1:
        return feature_groups(tuple(shape), config.patch_size)[None]
    if torch.equal(groups.flatten(), torch.arange(groups.numel(), device=groups.device)):
        return None
    return groups


def _surrogate_width(config: ExplainConfig, groups: torch.Tensor, shape) -> int:
    """How many features the surrogate probes per input."""
    labels = _surrogate_groups(config, groups, shape)
    return int(np.prod(tuple(shape))) if labels is None else num_groups(labels)


def _surrogate_inputs(data: SurrogateData, rows: int):
    """``(fit, holdout)`` with at most ``rows`` of each (holdout None: a quarter of fit)."""
    if callable(data):
        return data(rows)
    fit, holdout = data
    return fit[:rows], None if holdout is None else holdout[:rows]


def _sp_lime(attributions: dict[str, np.ndarray], groups: torch.Tensor) -> dict | None:
    """SP-LIME over the interpretable features: each group's summed attribution."""
    method = "lime" if "lime" in attributions else next(iter(attributions), None)
    if method is None:
        return None
    weights = group_sums(torch.as_tensor(attributions[method]), groups).abs().numpy()
    pick = submodular_pick(weights, budget=min(3, len(weights)), top_k=min(10, weights.shape[1]))
    return {
        "method": method,
        "picked": [int(i) for i in pick.indices],
        "coverage": [float(c) for c in pick.coverage_fraction],
    }


def _unit_costs(costs: UnitCosts) -> dict:
    return {
        "attribution": dict(costs.attribution),
        "metrics": costs.metrics,
        "forward_row": costs.forward_row,
    }
