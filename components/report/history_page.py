"""``history.html``: the nightly sweep's metrics across nights, with each night's configuration.

One figure per metric (nights in time order, each point labelled with its sweep's run id, nights
that raised the accuracy-drop alert in red), then a table of the nights: when, which sweep,
method, model, dataset, best configuration, alert; and a table of their metrics. Rows are those
of :func:`components.search.history.read_history`; which of their keys are metrics is passed
in, so the page does not depend on the search package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from components import atomic
from components.report import markup
from components.report.figure_set import FigureSet

HISTORY_PAGE = "history.html"
FIGURES = "history_figures"
_LINE, _ALERT = "#4c8bc9", "#d62728"
_NIGHT_COLUMNS = ("night", "sweep", "method", "model", "dataset", "best configuration", "alert")


def write_history_page(folder: Path | str, rows: Sequence[Mapping], metrics: Sequence[str]) -> Path:
    """Write ``folder/history.html`` (self-contained) and its figures as PNG files under
    ``folder/history_figures``; returns the page's path.

    Args:
        folder: where the history lives (``<run.root>/sweep``).
        rows: the nights, oldest first: ``run_id``, ``time``, ``method``, ``model``,
            ``dataset``, ``dataset_fingerprint``, ``best_config`` (JSON), ``alert`` and the
            metrics.
        metrics: the keys of ``rows`` to plot, one figure each.
    """
    folder = Path(folder)
    figures = FigureSet(folder / FIGURES)
    plots = [
        figures.add(f"history_{_file_stem(name)}", metric_figure(rows, name), _caption(name))
        for name in metrics
    ]
    body = [
        markup.section("Metrics across nights", *plots),
        markup.section("Nights", _nights_table(rows)),
        markup.section("Metrics per night", _metrics_table(rows, metrics)),
    ]
    subtitle = f"nights: {len(rows)}" + (f", latest {_night(rows[-1])}" if rows else "")
    page = markup.page("sennflow nightly sweep history", subtitle, body)
    return atomic.write_text(folder / HISTORY_PAGE, page, encoding="utf-8")


def metric_figure(rows: Sequence[Mapping], metric: str) -> Figure | None:
    """``metric`` night by night, each point labelled with its run id; None if no night has it."""
    points = [
        (i, row[metric], row)
        for i, row in enumerate(rows)
        if isinstance(row.get(metric), int | float) and row[metric] == row[metric]
    ]
    if not points:
        return None
    fig = Figure(figsize=(max(4.5, 0.8 * len(rows) + 2), 2.8))
    ax = fig.subplots()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ax.plot(xs, ys, color=_LINE, linewidth=1, zorder=1)
    colours = [_ALERT if row.get("alert") else _LINE for _, _, row in points]
    ax.scatter(xs, ys, c=colours, s=28, zorder=2)
    for x, y, row in points:
        ax.annotate(
            row["run_id"],
            (x, y),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=6,
            rotation=20,
        )
    ax.set_xticks(range(len(rows)), [_night(row) for row in rows], rotation=30, fontsize=7)
    ax.set_ylabel(metric, fontsize=8)
    ax.set_xlim(-0.5, len(rows) - 0.5)  # every metric's nights line up, also its missing ones
    ax.margins(y=0.25)
    ax.grid(alpha=0.3)
    return fig


def _nights_table(rows: Sequence[Mapping]) -> str:
    body = [
        (
            _night(row),
            row["run_id"],
            row.get("method"),
            row.get("model"),
            f"{row.get('dataset')} ({str(row.get('dataset_fingerprint') or '')[:12]})",
            _config_text(row.get("best_config")),
            row.get("alert") or "",
        )
        for row in rows
    ]
    alerted = {i for i, row in enumerate(rows) if row.get("alert")}
    return markup.table(_NIGHT_COLUMNS, body, highlight=alerted)


def _metrics_table(rows: Sequence[Mapping], metrics: Sequence[str]) -> str:
    counts = {name for name in metrics if all(_whole(row.get(name)) for row in rows)}
    body = [
        (row["run_id"], *(_shown(row.get(name), name in counts) for name in metrics))
        for row in rows
    ]
    return markup.table(("sweep", *metrics), body)


def _whole(value) -> bool:
    """Whether ``value`` is missing or a whole number (counts such as ``trials``)."""
    return value is None or (isinstance(value, float) and value.is_integer())


def _shown(value, count: bool):
    """Counts (stored as float64 like every metric) shown as integers."""
    return int(value) if count and value is not None else value


def _config_text(config: str | None) -> str:
    """``{"train.lr": 0.003, ...}`` as ``train.lr=0.003, ...``."""
    if not config:
        return ""
    values = json.loads(config)
    return ", ".join(f"{key}={markup.format_value(value)}" for key, value in values.items())


def _night(row: Mapping) -> str:
    time = row.get("time")
    return time.strftime("%Y-%m-%d %H:%M") if time is not None else "?"


def _caption(metric: str) -> str:
    return f"{metric} of each night's best configuration (red: the night raised the alert)"


def _file_stem(metric: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in metric)
