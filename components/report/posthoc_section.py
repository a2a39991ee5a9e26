"""The post-hoc part of the report's "Explanations" section.

Built from ``ReportData.explanations["post_hoc"]``: the attribution maps of every method side by
side, the explanation metric table, the chooser's ranking and recommendation, the global
surrogate's rules, SP-LIME's representative samples and the time per method. Every part but the
attribution figure is optional and left out when its data is missing.

``post_hoc`` keys: ``methods`` (display order), ``labels`` (method -> display name),
``sample_indices``, ``inputs`` (``(n, *feature_shape)``), ``predicted``, ``true``,
``attributions`` (method -> ``(n, *feature_shape)``), ``metrics`` (method -> metric -> mean),
``metric_directions`` (metric -> ``"higher"``/``"lower"``), ``ranking`` (``metric``,
``higher_is_better``, ``num_samples``, ``confidence``, ``rows`` of ``method``, ``mean``,
``ci_low``, ``ci_high``, ``p_best``, ``rank``), ``recommended``, ``surrogate`` (``kind``,
``fidelity``, ``features``, ``rules``, ``units``, ``top_k``), ``sp_lime`` (``method``, ``picked``,
``coverage``), ``timings`` (method -> seconds), ``budget`` (``budget_s``, ``spent_s``,
``seconds`` per part, ``chosen`` / ``requested`` counts, ``skipped``, ``feature_groups``; see
:func:`components.explain.posthoc.stage.explain_post_hoc`). Tabular features are named by the
dataset's ``feature_names`` (through the page's ``input_scale``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from components.report import markup
from components.report.data import PostHoc
from components.report.explanation_figures import is_image
from components.report.figure_set import FigureSet
from components.report.posthoc_data import (
    as_list,
    budget_rows,
    budget_sentences,
    method_label,
    number,
    ranked_rows,
    ranking_metric_name,
    shown_methods,
)
from components.report.posthoc_figures import (
    TOP_FEATURES,
    posthoc_attribution_figure,
    ranking_figure,
)
from components.report.posthoc_metrics import format_metric, metric_legend, metric_table, table

_ATTRIBUTION_CAPTION = (
    "Attributions of the predicted class per method (columns) for a few test samples (rows: "
    "test index, true / predicted class); red raises the prediction, blue lowers it. "
)


def _attribution_caption(feature_shape: Sequence[int]) -> str:
    if not is_image(feature_shape):
        return _ATTRIBUTION_CAPTION + f"Each method's {TOP_FEATURES} largest attributions."
    rgb = " summed over the colour channels" if feature_shape[0] == 3 else ""
    return _ATTRIBUTION_CAPTION + f"Each map{rgb} has its own symmetric scale (±limit below it)."


def posthoc_parts(
    post_hoc: PostHoc, feature_shape: Sequence[int], class_names: Sequence[str], figures: FigureSet
) -> list[str]:
    """The HTML fragments of the post-hoc explanations; [] when ``post_hoc`` is empty."""
    if not post_hoc:
        return []
    return [
        *_attribution_parts(post_hoc, feature_shape, class_names, figures),
        *_metric_parts(post_hoc),
        *_ranking_parts(post_hoc, figures),
        *_surrogate_parts(post_hoc),
        *_sp_lime_parts(post_hoc),
        *_timing_parts(post_hoc),
        *_budget_parts(post_hoc),
    ]


def _attribution_parts(post_hoc, feature_shape, class_names, figures: FigureSet) -> list[str]:
    fig = posthoc_attribution_figure(post_hoc, feature_shape, class_names)
    if fig is None:
        return []
    caption = _attribution_caption(feature_shape)
    if getattr(post_hoc.get("input_scale"), "categories", ()):
        caption += " A column of words is one bar, its 0/1 features summed, named by the word."
        if ((post_hoc.get("budget") or {}).get("feature_groups") or {}).get("by_column"):
            caption += " The removal-based methods remove its 0/1 features together."
    return ["<h3>Post-hoc attributions</h3>", figures.add("posthoc_attributions", fig, caption)]


def _metric_parts(post_hoc: Mapping) -> list[str]:
    if not post_hoc.get("metrics"):
        return []
    note = "Means over the evaluated test samples; the best value per column is shaded."
    return [
        "<h3>Explanation metrics</h3>",
        markup.paragraph(note, "note"),
        metric_table(post_hoc),
        metric_legend(post_hoc),
    ]


def _ranking_parts(post_hoc: Mapping, figures: FigureSet) -> list[str]:
    ranking = post_hoc.get("ranking") or {}
    rows = ranked_rows(ranking)
    parts = [recommendation(post_hoc, rows)] if post_hoc.get("recommended") else []
    parts += _exclusion_parts(post_hoc)
    if rows:
        parts += [_ranking_table(post_hoc, ranking, rows), _ranking_figure(post_hoc, figures)]
    return ["<h3>Choosing a method</h3>", *parts] if parts else []


def _exclusion_parts(post_hoc: Mapping) -> list[str]:
    """Which methods a trust check kept out of the recommendation, and why (``excluded``,
    ``exclusion_reasons``: method -> reason)."""
    excluded = as_list(post_hoc.get("excluded"))
    if not excluded:
        return []
    reasons = post_hoc.get("exclusion_reasons") or {}
    items = "; ".join(
        f"{method_label(post_hoc, str(m))} ({reasons.get(m, 'a trust check')})" for m in excluded
    )
    lead = "" if post_hoc.get("recommended") else "No method is recommended: every one is "
    text = f"{lead or 'Not recommended, '}excluded by the trust checks: {items}."
    return [markup.paragraph(text[0].upper() + text[1:])]


def _ranking_table(post_hoc: Mapping, ranking: Mapping, rows: Sequence[Mapping]) -> str:
    level = number(ranking.get("confidence"))
    header = ("rank", "method", "mean", f"{level:.0%} CI" if level else "CI", "P(best)")
    body = [
        (
            row.get("rank", i + 1),
            method_label(post_hoc, str(row.get("method", "?"))),
            row.get("mean"),
            _interval_text(row),
            row.get("p_best"),
        )
        for i, row in enumerate(rows)
    ]
    best = {i for i, row in enumerate(rows) if row.get("method") == post_hoc.get("recommended")}
    return table(header, body, highlight=best)


def _interval_text(row: Mapping) -> str:
    low, high = row.get("ci_low"), row.get("ci_high")
    if number(low) is None and number(high) is None:
        return "n/a"
    return f"[{format_metric(low)}, {format_metric(high)}]"


def recommendation(post_hoc: Mapping, rows: Sequence[Mapping]) -> str:
    """The paragraph ``Recommended for this model and data: <label> (<why>).``"""
    method = post_hoc["recommended"]
    text = f"Recommended for this model and data: {method_label(post_hoc, method)}"
    row = next((r for r in rows if r.get("method") == method), None)
    why = _why(post_hoc.get("ranking") or {}, row) if row else ""
    return markup.paragraph(f"{text} ({why})." if why else f"{text}.")


def _why(ranking: Mapping, row: Mapping) -> str:
    """E.g. ``highest mean PGI, 0.41 (95% CI [0.37, 0.45]), P(best) 0.62, over 64 samples``."""
    better = ranking.get("higher_is_better")
    order = "best" if better is None else ("highest" if better else "lowest")
    level = number(ranking.get("confidence"))
    pieces = [f"{order} mean {ranking_metric_name(ranking)}, {format_metric(row.get('mean'))}"]
    if _interval_text(row) != "n/a":
        pieces[0] += f" ({f'{level:.0%} ' if level else ''}CI {_interval_text(row)})"
    if number(row.get("p_best")) is not None:
        pieces.append(f"P(best) {format_metric(row['p_best'])}")
    if ranking.get("num_samples"):
        pieces.append(f"over {ranking['num_samples']} test samples")
    return ", ".join(pieces)


def _ranking_figure(post_hoc: Mapping, figures: FigureSet) -> str:
    ranking = post_hoc.get("ranking") or {}
    caption = (
        f"Mean {ranking_metric_name(ranking)} per method with its confidence interval, best "
        "first; red: the recommended method"
    )
    return figures.add("posthoc_ranking", ranking_figure(ranking, post_hoc), caption)


def _surrogate_parts(post_hoc: Mapping) -> list[str]:
    surrogate = post_hoc.get("surrogate")
    if not surrogate:
        return []
    kind = surrogate.get("kind", "model")
    lines = [f"A global surrogate ({kind}) fitted to mimic the model's predictions."]
    if number(surrogate.get("fidelity")) is not None:
        lines.append(f"Fidelity (agreement with the model): {format_metric(surrogate['fidelity'])}")
    lines += _surrogate_feature_lines(surrogate)
    parts = ["<h3>Surrogate model</h3>", *(markup.paragraph(line) for line in lines)]
    if surrogate.get("rules"):
        if surrogate.get("units") == "data":
            parts.append(markup.paragraph("Its rules, in the data's own units:"))
        parts.append(markup.preformatted(str(surrogate["rules"])))
    return parts


def _surrogate_feature_lines(surrogate: Mapping) -> list[str]:
    """Which features the surrogate was given (the model's most important) and which of them
    its fit uses; explanations written before ``used`` was recorded say only the first."""
    features = [str(f) for f in as_list(surrogate.get("features"))]
    if not features:
        return []
    count = surrogate.get("top_k") or len(features)
    given = f"the model's {count} most important features, most important first: "
    if "used" not in surrogate:
        return [f"It was given {given}{'; '.join(features)}"]
    used = [str(f) for f in as_list(surrogate.get("used"))]
    lines = [f"It was given {given}{'; '.join(features)}."]
    if len(used) == len(features):
        lines.append("It uses all of them.")
    elif used:
        lines.append(f"It uses {len(used)} of them: {'; '.join(used)}.")
    else:
        lines.append("It uses none of them: it predicts one class everywhere.")
    return lines


def _sp_lime_parts(post_hoc: Mapping) -> list[str]:
    sp_lime = post_hoc.get("sp_lime") or {}
    picked = as_list(sp_lime.get("picked"))
    if not picked:
        return []
    method = method_label(post_hoc, str(sp_lime.get("method", "lime")))
    note = (
        f"SP-LIME (Ribeiro et al., 2016) picked these test samples as a small, non-redundant set "
        f"whose {method} explanations cover the most important features; coverage is the share "
        "of feature importance covered after each pick."
    )
    coverage = _coverages(sp_lime.get("coverage"), len(picked))
    rows = [(i + 1, index, c) for i, (index, c) in enumerate(zip(picked, coverage, strict=True))]
    return [
        "<h3>SP-LIME: representative samples</h3>",
        markup.paragraph(note),
        table(("pick", "test sample", "coverage"), rows),
    ]


def _coverages(coverage, count: int) -> list:
    """One coverage per pick; a single total belongs to the last pick, missing ones are None."""
    values = as_list(coverage)
    if len(values) == 1:
        values = [None] * (count - 1) + values
    return (values + [None] * count)[:count]


def _timing_parts(post_hoc: Mapping) -> list[str]:
    timings = post_hoc.get("timings") or {}
    if not timings:
        return []
    methods = [m for m in shown_methods(post_hoc) if m in timings]
    methods += [m for m in timings if m not in methods]
    rows = [(method_label(post_hoc, m), timings[m]) for m in methods]
    return ["<h3>Time per method</h3>", table(("method", "seconds"), rows)]


def _budget_parts(post_hoc: Mapping) -> list[str]:
    """How many samples the stage explained within its time budget, the seconds per part and
    what it skipped."""
    budget = post_hoc.get("budget") or {}
    sentences = budget_sentences(budget)
    if not sentences:
        return []
    parts = ["<h3>Cost of the explanations</h3>", *(markup.paragraph(s) for s in sentences)]
    rows = budget_rows(budget)
    if rows:
        parts.append(table(("part", "seconds"), rows))
    return parts
