"""The post-hoc explanation metric table: one row per method, the best value per column marked.

:data:`METRICS` holds each known metric's display name, which way is better and a one-line
meaning; ``post_hoc["metric_directions"]`` overrides the direction, and unknown metrics are shown
unmarked after the known ones.
"""

from __future__ import annotations

import numbers
from collections.abc import Container, Mapping, Sequence

from components.report import markup
from components.report.posthoc_data import (
    ARROWS,
    METRICS,
    method_label,
    metric_direction,
    metric_name,
    number,
    shown_methods,
)

_BEST_STYLE = ' style="background:#dafbe1;font-weight:700"'


def format_metric(value) -> str:
    """Integers as they are, four significant digits for other numbers, ``n/a`` when missing."""
    if value is None or isinstance(value, bool | str):
        return "n/a" if value is None else str(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    as_number = number(value)
    return "n/a" if as_number is None else f"{as_number:.4g}"


def _cell(value, shaded: bool) -> str:
    numeric = value is None or (isinstance(value, numbers.Number) and not isinstance(value, bool))
    attrs = (' class="num"' if numeric else "") + (_BEST_STYLE if shaded else "")
    return f"<td{attrs}>{markup.esc(format_metric(value))}</td>"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence],
    highlight: Container[int] = (),
    shaded: Container[tuple[int, int]] = (),
) -> str:
    """Like :func:`components.report.markup.table`, numbers shown by :func:`format_metric`.

    Rows whose index is in ``highlight`` are highlighted; cells ``(row, column)`` in ``shaded``
    are shaded green and bold (the best of their column).
    """
    head = "".join(f"<th>{markup.esc(h)}</th>" for h in header)
    body = "".join(
        ('<tr class="highlight">' if i in highlight else "<tr>")
        + "".join(_cell(value, (i, j) in shaded) for j, value in enumerate(row))
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return markup.table_markup(head, body)


def _columns(metrics: Mapping[str, Mapping]) -> list[str]:
    """The metrics any method reports: known ones in :data:`METRICS` order, then the rest."""
    present = dict.fromkeys(k for scores in metrics.values() for k in (scores or {}))
    return [k for k in METRICS if k in present] + [k for k in present if k not in METRICS]


def _best_rows(values: Sequence, direction: str | None) -> set[int]:
    """Indices of the best of ``values`` (ties included); none without a direction or 2 values."""
    numbers = [number(v) for v in values]
    finite = [v for v in numbers if v is not None]
    if direction not in ARROWS or len(finite) < 2:
        return set()
    best = max(finite) if direction == "higher" else min(finite)
    return {i for i, v in enumerate(numbers) if v == best}


def _header(post_hoc: Mapping, metric: str) -> str:
    arrow = ARROWS.get(metric_direction(post_hoc, metric), "")
    return f"{metric_name(metric)} {arrow}".strip()


def metric_table(post_hoc: Mapping) -> str:
    """Rows: methods (the recommended one marked); columns: the metrics; best values shaded."""
    metrics = post_hoc.get("metrics") or {}
    methods = [m for m in shown_methods(post_hoc) if m in metrics]
    methods += [m for m in metrics if m not in methods]
    columns = _columns(metrics)
    grid = [[(metrics[m] or {}).get(c) for c in columns] for m in methods]
    shaded = {
        (i, j + 1)
        for j, column in enumerate(columns)
        for i in _best_rows([row[j] for row in grid], metric_direction(post_hoc, column))
    }
    rows = [[_method_cell(post_hoc, m), *values] for m, values in zip(methods, grid, strict=True)]
    header = ["method", *(_header(post_hoc, c) for c in columns)]
    return table(header, rows, shaded=shaded)


def _method_cell(post_hoc: Mapping, method: str) -> str:
    label = method_label(post_hoc, method)
    return f"{label} (recommended)" if method == post_hoc.get("recommended") else label


def metric_legend(post_hoc: Mapping) -> str:
    """One short line per metric in the table: what it measures and which way is better."""
    items = []
    for metric in _columns(post_hoc.get("metrics") or {}):
        direction = metric_direction(post_hoc, metric)
        better = f" ({ARROWS[direction]} {direction} is better)" if direction else ""
        meaning = METRICS[metric][2] if metric in METRICS else "no description"
        items.append(f"<li>{markup.esc(f'{metric_name(metric)}{better}: {meaning}')}</li>")
    return f'<ul class="note">{"".join(items)}</ul>' if items else ""
