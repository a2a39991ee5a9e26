"""Reading ``ReportData.explanations["post_hoc"]``: tolerant accessors and the known metrics.

The accessors accept missing keys, None, NumPy arrays and non-finite numbers, so the report shows
what exists and never fails on a partial ``post_hoc`` (its keys: see
:mod:`components.report.posthoc_section`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

METRICS: dict[str, tuple[str, str, str]] = {
    "pgi": ("PGI", "higher", "prediction gap when the most important features are removed"),
    "pgu": ("PGU", "lower", "prediction gap when the least important features are removed"),
    "fid_plus": ("Fid+", "higher", "probability drop when the important features are removed"),
    "fid_minus": ("Fid−", "lower", "probability drop when only the important features are kept"),
    "fid_delta": ("ΔFid", "higher", "Fid+ minus Fid−"),
    "deletion_auc": ("Deletion AUC", "lower", "probability curve as top features are deleted"),
    "insertion_auc": ("Insertion AUC", "higher", "probability curve as top features are inserted"),
    "infidelity": (
        "Infidelity (removal)",
        "lower",
        "error of attributions predicting the effect of removing random feature subsets",
    ),
    "infidelity_gaussian": (
        "Infidelity (Gaussian)",
        "lower",
        "error of attributions predicting the effect of small Gaussian perturbations",
    ),
    "sensitivity_max": ("Sensitivity", "lower", "largest attribution change under small noise"),
    "ris": ("RIS", "lower", "relative input stability: attribution change per input change"),
    "sparseness": ("Sparseness", "higher", "Gini index of |attributions|: few features carry it"),
    "entropy": ("Entropy", "lower", "entropy of the normalised |attributions| (complexity)"),
    "completeness_gap": ("Completeness gap", "lower", "|sum of attributions − output change|"),
    "mask_localisation": ("Localisation", "higher", "share of |attribution| inside the true mask"),
}
ARROWS = {"higher": "↑", "lower": "↓"}


def method_label(post_hoc: Mapping, method: str) -> str:
    """The display name of ``method`` (``post_hoc["labels"]``), else the method's key."""
    return str((post_hoc.get("labels") or {}).get(method, method))


def as_list(value) -> list:
    """``value`` as a list: [] for None, ``[value]`` for a scalar; arrays and sequences listed."""
    if value is None:
        return []
    return [value] if np.ndim(value) == 0 else list(np.ravel(np.asarray(value, dtype=object)))


def shown_methods(post_hoc: Mapping) -> list[str]:
    """The methods in display order: ``methods``, else the keys of ``attributions``."""
    return as_list(post_hoc.get("methods")) or list(post_hoc.get("attributions") or {})


def number(value) -> float | None:
    """``value`` as a finite float, else None (missing, NaN, infinite or not a number)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def ranked_rows(ranking: Mapping) -> list[Mapping]:
    """The ranking's rows best first: by ``rank`` where given, else in the given order."""
    rows = list(ranking.get("rows") or [])
    return sorted(rows, key=lambda r: (number(r.get("rank")) is None, number(r.get("rank")) or 0))


def metric_name(metric: str) -> str:
    """The display name of ``metric`` (its key when unknown)."""
    return METRICS.get(metric, (metric,))[0]


def metric_direction(post_hoc: Mapping, metric: str) -> str | None:
    """``"higher"`` or ``"lower"`` (is better): as ``post_hoc`` says, else as known; or None."""
    given = (post_hoc.get("metric_directions") or {}).get(metric)
    if given in ARROWS:
        return given
    return METRICS[metric][1] if metric in METRICS else None


def ranking_metric_name(ranking: Mapping) -> str:
    """The display name of the metric the chooser ranked by (``metric`` when not given)."""
    return metric_name(str(ranking.get("metric") or "metric"))


_COUNT_NAMES = {
    "eval_samples": "test samples explained and scored",
    "robustness_samples": "of them re-explained under noise (robustness)",
    "perturbation_samples": "model calls per LIME / C-LIME / KernelSHAP explanation",
    "surrogate_probes": "inputs probed for the surrogate's features",
    "surrogate_rows": "rows the surrogate is fitted on",
}


def budget_sentences(budget: Mapping) -> list[str]:
    """The explain stage's cost in words: limit and time spent, the counts used against the
    configured ones, the feature groups and what was skipped (``post_hoc["budget"]``)."""
    if not budget or not isinstance(budget, Mapping):
        return []
    limit, spent = number(budget.get("budget_s")), number(budget.get("spent_s"))
    head = "No time limit" if limit is None else f"Time budget {limit:.1f} s"
    sentences = [head + (f", spent {spent:.1f} s." if spent is not None else ".")]
    stage, train = number(budget.get("stage_s")), number(budget.get("train_s"))
    if stage is not None:
        trained = f" (training took {train:.1f} s)" if train is not None else ""
        sentences.append(f"The whole explain stage took {stage:.1f} s{trained}.")
    chosen, requested = _mapping(budget.get("chosen")), _mapping(budget.get("requested"))
    used = [
        f"{chosen[key]} of {requested.get(key, chosen[key])} {text}"
        for key, text in _COUNT_NAMES.items()
        if key in chosen
    ]
    if used:
        sentences.append("Used: " + "; ".join(used) + ".")
    groups = _mapping(budget.get("feature_groups"))
    if groups.get("groups"):
        each = " per sample" if groups.get("per_sample") else ""
        columns = ": one per column, a word column's 0/1 features together" * bool(
            groups.get("by_column")
        )
        sentences.append(
            f"Features removed and ranked: {groups['groups']} groups{each} "
            f"(feature_groups={groups.get('kind', '?')}{columns})."
        )
    skipped = as_list(budget.get("skipped"))
    if skipped:
        sentences.append("Skipped to stay within the budget: " + "; ".join(map(str, skipped)) + ".")
    return sentences


def budget_rows(budget: Mapping) -> list[tuple[str, float]]:
    """``(part, seconds)`` rows of the stage's parts, in the order they ran."""
    seconds = _mapping(_mapping(budget).get("seconds"))
    return [(str(part), value) for part, value in seconds.items() if number(value) is not None]


def _mapping(value) -> Mapping:
    return value if isinstance(value, Mapping) else {}
