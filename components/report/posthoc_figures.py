"""Figures of the post-hoc explanations: attribution maps per method, the chooser's ranking.

Both take ``ReportData.explanations["post_hoc"]`` (see :mod:`components.report.posthoc_section`)
and return None when the parts they draw are missing or unusable. The report adds
``post_hoc["input_scale"]`` (an :class:`~components.report.display.InputScale`) so inputs are
drawn in their natural scale; without it they are drawn as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from components.report.display import identity_scale
from components.report.explanation_figures import attribution_grid_figure
from components.report.figures import sample_label
from components.report.posthoc_data import (
    as_list,
    method_label,
    number,
    ranked_rows,
    ranking_metric_name,
    shown_methods,
)

TOP_FEATURES = 10  # tabular samples: features shown per method


def _maps(post_hoc: Mapping, num_samples: int, size: int) -> dict[str, np.ndarray]:
    """Per method label, its attributions as ``(num_samples, size)``; unusable ones left out."""
    maps = {}
    attributions = post_hoc.get("attributions") or {}
    for method in shown_methods(post_hoc):
        try:
            values = np.asarray(attributions[method], dtype=float).reshape(num_samples, size)
        except (KeyError, TypeError, ValueError):
            continue
        maps[method_label(post_hoc, method)] = values
    return maps


def _row_label(post_hoc: Mapping, row: int, class_names: Sequence[str]) -> str:
    """The test index, true and predicted class of shown sample ``row`` (:func:`sample_label`)."""

    def at(key: str):
        values = as_list(post_hoc.get(key))
        return values[row] if row < len(values) else None

    index = at("sample_indices")
    return sample_label(
        index if index is not None else row, at("true"), at("predicted"), class_names
    )


def posthoc_attribution_figure(
    post_hoc: Mapping, feature_shape: Sequence[int], class_names: Sequence[str]
) -> Figure | None:
    """Rows: the shown samples; columns: the input, then one attribution map per method."""
    size = int(np.prod(feature_shape))
    if post_hoc.get("inputs") is None or not size:
        return None
    try:
        inputs = np.asarray(post_hoc.get("inputs"), dtype=float).reshape(-1, size)
    except (TypeError, ValueError):
        return None
    maps = _maps(post_hoc, len(inputs), size)
    if not len(inputs) or not maps:
        return None
    labels = [_row_label(post_hoc, row, class_names) for row in range(len(inputs))]
    scale = post_hoc.get("input_scale") or identity_scale(feature_shape)
    return attribution_grid_figure(inputs, maps, scale, labels, TOP_FEATURES)


def _interval(row: Mapping) -> tuple[float, float, float] | None:
    """(mean, lower error, upper error) of a ranking row; None without a finite mean."""
    mean = number(row.get("mean"))
    if mean is None:
        return None
    low, high = number(row.get("ci_low")), number(row.get("ci_high"))
    low, high = mean if low is None else low, mean if high is None else high
    return mean, max(mean - low, 0.0), max(high - mean, 0.0)


def ranking_figure(ranking: Mapping, post_hoc: Mapping) -> Figure | None:
    """The ranked methods' mean metric with its confidence interval, best first (top, red)."""
    rows = [(r, _interval(r)) for r in ranked_rows(ranking)]
    rows = [(r, i) for r, i in rows if i is not None]
    if not rows:
        return None
    best = post_hoc.get("recommended") or rows[0][0].get("method")
    fig = Figure(figsize=(6.0, 0.9 + 0.32 * len(rows)), layout="constrained")
    ax = fig.subplots()
    for y, (row, (mean, below, above)) in enumerate(rows):
        colour = "#c0392b" if row.get("method") == best else "#4c8bc9"
        ax.errorbar(mean, y, xerr=[[below], [above]], fmt="o", color=colour, capsize=3)
    ax.set_yticks(range(len(rows)), [method_label(post_hoc, r.get("method", "?")) for r, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(_axis_label(ranking))
    ax.grid(axis="x", alpha=0.3)
    return fig


def _axis_label(ranking: Mapping) -> str:
    """``mean <metric> (higher is better)``, as far as the ranking says."""
    label = f"mean {ranking_metric_name(ranking)}"
    better = ranking.get("higher_is_better")
    return label if better is None else f"{label} ({'higher' if better else 'lower'} is better)"
