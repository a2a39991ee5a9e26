"""Figures of a hyperparameter or architecture search: trials, schedules, searched cells.

Trials are the ``search["trials"]`` dicts of :class:`components.report.ReportData`; the genotype
and architecture weights follow :class:`components.models.nas_ops.Genotype` (two
``(op, input)`` edges per intermediate node; input 0 and 1 are the cell inputs, ``k >= 2`` is
intermediate node ``k - 2``). Primitive names are passed in, never imported, so the report does
not depend on where the search operations live.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from components.report.figures import series

_BEST = "#d62728"
# Tune names a trial folder <trainable>_<5-hex experiment id>_<index>_<config>_<date>
_TUNE_TRIAL = re.compile(r"_[0-9a-f]{5}_\d{5}_(\d+)_")
_STATUS_COLOURS = {"done": "#4c8bc9", "stopped early": "#f39c12"}
_NODE_COLOURS = {"input": "#c7e9c0", "node": "#c6dbef", "output": "#fdd49e"}
_NODE_RADIUS = 0.32
_EDGE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_STEP = 1.9  # horizontal distance of the cell diagram's intermediate nodes
# curvatures tried for each cell edge, flattest first (matplotlib "arc3" rad)
_ARCS = (0.12, -0.12, 0.3, -0.3, 0.5, -0.5)


def short_trial_name(name: str) -> str:
    """``trial <index>`` for a Tune trial folder name (``<trainable>_<id>_<index>_<config>_<date>``,
    too long for a legend); any other name as it is."""
    match = _TUNE_TRIAL.search(name)
    return f"trial {match.group(1)}" if match else name


def is_number(value) -> bool:
    """True for a finite int or float (bools are categories, not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def metric_of(trial: Mapping, metric: str) -> float | None:
    """The trial's final ``metric``, or None when it has none (e.g. a failed trial)."""
    value = trial.get(metric)
    return float(value) if is_number(value) else None


def is_failed(trial: Mapping) -> bool:
    """True for a trial that errored."""
    return str(trial.get("status", "")).lower() in ("failed", "error")


def sort_trials(trials: Sequence[Mapping], metric: str, mode: str) -> list[Mapping]:
    """Best first by ``metric`` (``mode`` "min" or "max"); unscored, then failed trials last."""
    sign = -1.0 if mode == "max" else 1.0

    def key(trial: Mapping) -> tuple[bool, bool, float]:
        value = metric_of(trial, metric)
        return is_failed(trial), value is None, 0.0 if value is None else sign * value

    return sorted(trials, key=key)


def _grid(count: int, width: float, height: float, max_cols: int = 4) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` panels in rows of at most ``max_cols``; spare panels hidden."""
    cols = min(count, max_cols)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _log_if_wide(values: Sequence[float], set_scale) -> None:
    """Log scale for positive values spanning more than two decades (learning rates, decay)."""
    if values and min(values) > 0 and max(values) / min(values) > 100:
        set_scale("log")


def _ordered_keys(rows: Sequence[Mapping], numeric_only: bool = False) -> list[str]:
    """Keys in order of first appearance; with ``numeric_only``, those with a number somewhere."""
    keys: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if not numeric_only or is_number(value):
                keys.setdefault(key, None)
    return list(keys)


def hyperparameter_figure(
    trials: Sequence[Mapping], metric: str, best: str | None = None
) -> Figure | None:
    """One scatter panel per sampled hyperparameter against ``metric``; None without data.

    Args:
        trials: the search's trials; those without ``metric`` are skipped.
        metric: the trial metric on the y axis.
        best: id of the best trial, marked with a star.

    Returns:
        The figure, or None when no scored trial has a hyperparameter.
    """
    scored = [t for t in trials if metric_of(t, metric) is not None]
    names = _ordered_keys([t.get("config") or {} for t in scored])
    if not names:
        return None
    fig, axes = _grid(len(names), 3.6, 3.0)
    for ax, name in zip(axes, names, strict=True):
        _scatter(ax, [t for t in scored if name in (t.get("config") or {})], name, metric, best)
    return fig


def _scatter(ax: Axes, trials: Sequence[Mapping], name: str, metric: str, best: str | None):
    values = [t["config"][name] for t in trials]
    if all(is_number(v) for v in values):
        x = np.asarray(values, dtype=float)
        _log_if_wide(list(x), ax.set_xscale)
    else:  # categorical (str, bool, mixed): one x position per category
        categories = sorted({str(v) for v in values})
        x = np.asarray([categories.index(str(v)) for v in values], dtype=float)
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    y = np.asarray([metric_of(t, metric) for t in trials])
    colours = [_STATUS_COLOURS.get(t.get("status"), "#7f7f7f") for t in trials]
    ax.scatter(x, y, s=24, c=colours, alpha=0.85)
    is_best = np.asarray([t.get("trial") == best for t in trials], dtype=bool)
    if is_best.any():
        ax.scatter(x[is_best], y[is_best], s=170, marker="*", color=_BEST, zorder=3)
    ax.set_xlabel(name, fontsize=9)
    ax.set_ylabel(metric, fontsize=9)
    ax.grid(alpha=0.3)


def trial_curves_figure(
    trials: Sequence[Mapping], metric: str = "val_loss", best: str | None = None
) -> Figure | None:
    """Per-epoch validation curves of all trials (grey), the best one in red; None without data.

    One panel per key among ``metric``, ``val_loss`` and ``val_accuracy`` that some trial's
    history reports. A trial stopped early ends in an ``x``. The trials of a pruning sweep
    report once per pruning round, not per epoch (their rows carry ``prune_round``).
    """
    rows = [row for t in trials for row in t.get("history") or []]
    x_label = "pruning round" if any("prune_round" in row for row in rows) else "epoch"
    keys = [
        key
        for key in dict.fromkeys((metric, "val_loss", "val_accuracy"))
        if any(series(t.get("history") or [], key)[1] for t in trials)
    ]
    if not keys:
        return None
    fig, axes = _grid(len(keys), 4.8, 3.4)
    for ax, key in zip(axes, keys, strict=True):
        for trial in trials:
            _trial_curve(ax, trial, key, trial.get("trial") == best)
        ax.set_xlabel(x_label)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if any(t.get("trial") == best for t in trials):
            ax.legend(fontsize=8)
    return fig


def _trial_curve(ax: Axes, trial: Mapping, key: str, is_best: bool) -> None:
    epochs, values = series(trial.get("history") or [], key)
    if not values:
        return
    if is_best:
        ax.plot(epochs, values, color=_BEST, lw=2.2, zorder=3, label="best trial")
        return
    ax.plot(epochs, values, color="#9aa5b1", lw=0.9, alpha=0.85)
    if trial.get("status") == "stopped early":
        ax.plot(epochs[-1], values[-1], "x", color="#5c6670", markersize=5)


def schedules_figure(
    schedules: Mapping[str, Sequence[Mapping]], best: str | None = None
) -> Figure | None:
    """STN: one panel per learned hyperparameter, its value per epoch, one line per trial.

    Every numeric key other than ``epoch`` is drawn, so new hyperparameters need no change here.
    """
    rows = [row for schedule in schedules.values() for row in schedule]
    names = [k for k in _ordered_keys(rows, numeric_only=True) if k != "epoch"]
    if not names:
        return None
    fig, axes = _grid(len(names), 3.6, 2.8)
    for ax, name in zip(axes, names, strict=True):
        for trial, schedule in schedules.items():
            numeric = [row for row in schedule if is_number(row.get(name))]
            epochs, values = series(numeric, name)
            width = 2.2 if trial == best else 1.0
            label = short_trial_name(str(trial))
            ax.plot(epochs, values, lw=width, marker="o", markersize=2, label=label)
        _log_if_wide([v for r in rows if is_number(v := r.get(name))], ax.set_yscale)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    if 1 < len(schedules) <= 10:
        axes[0].legend(fontsize=7)
    return fig


def _node_positions(nodes: int) -> np.ndarray:
    """Cell inputs on the left, intermediate nodes zig-zagging rightwards, the output last."""
    inputs = [(0.0, 1.5), (0.0, -1.5)]
    middle = [(_STEP * (i + 1), 0.9 if i % 2 == 0 else -0.9) for i in range(nodes)]
    return np.asarray([*inputs, *middle, (_STEP * (nodes + 1), 0.0)])


def _draw_node(ax: Axes, xy: np.ndarray, label: str, kind: str) -> Circle:
    circle = Circle(tuple(xy), _NODE_RADIUS, facecolor=_NODE_COLOURS[kind], edgecolor="#444444")
    ax.add_patch(circle)
    ax.text(*xy, label, ha="center", va="center", fontsize=9)
    return circle


def _arc(tail: np.ndarray, head: np.ndarray, rad: float, t: np.ndarray) -> np.ndarray:
    """Points at ``t`` of matplotlib's ``arc3`` quadratic Bezier from ``tail`` to ``head``."""
    dx, dy = head - tail
    control = (tail + head) / 2 + rad * np.array([dy, -dx])
    t = np.asarray(t, dtype=float)[:, None]
    return (1 - t) ** 2 * tail + 2 * (1 - t) * t * control + t**2 * head


def _clearance(path: np.ndarray, label, others: np.ndarray, labels: list) -> float:
    """>= 1 when the path misses the other nodes and the label overlaps no node or label."""
    gaps = [np.hypot(*(path - node).T).min() / (1.3 * _NODE_RADIUS) for node in others]
    if label is not None:
        # labels are about 0.8 wide and 0.2 high in data units: a box test, not a distance
        gaps += [max(abs(label[0] - x) / 0.85, abs(label[1] - y) / 0.22) for x, y in labels]
        gaps += [
            max(abs(label[0] - x) / (_NODE_RADIUS + 0.42), abs(label[1] - y) / (_NODE_RADIUS + 0.1))
            for x, y in others
        ]
    return min(gaps, default=np.inf)


def _pick_arc(positions: np.ndarray, src: int, dst: int, labels: list | None) -> float:
    """The flattest curvature whose edge keeps clear of other nodes and earlier labels."""
    others = np.delete(positions, [src, dst], axis=0)
    scores = []
    for rad in _ARCS:
        path = _arc(positions[src], positions[dst], rad, np.linspace(0.1, 0.9, 17))
        label = None if labels is None else path[8]
        scores.append(_clearance(path, label, others, labels or []))
        if scores[-1] >= 1:
            return rad
    return _ARCS[int(np.argmax(scores))]


def _draw_edge(ax: Axes, circles, src: int, dst: int, rad: float, op: str | None) -> tuple:
    """An arrow ``src -> dst`` labelled ``op`` at its middle (None: dashed concat edge).

    Each labelled edge gets its own colour, shared by its label, so crossing edges stay apart.
    """
    tail, head = circles[src], circles[dst]
    colour = _EDGE_COLOURS[(2 * dst + src) % len(_EDGE_COLOURS)] if op else "#888888"
    style = {"lw": 0.8, "ls": "--"} if op is None else {"lw": 1.2}
    ax.annotate(
        "",
        xy=head.center,
        xytext=tail.center,
        arrowprops={
            "arrowstyle": "-|>",
            "connectionstyle": f"arc3,rad={rad}",
            "patchA": tail,
            "patchB": head,
            "shrinkA": 1,
            "shrinkB": 1,
            "color": colour,
            **style,
        },
    )
    middle = _arc(np.asarray(tail.center), np.asarray(head.center), rad, [0.5])[0]
    if op is not None:
        box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"}
        ax.text(*middle, op, ha="center", va="center", fontsize=7, color=colour, bbox=box, zorder=4)
    return tuple(middle)


def draw_cell(ax: Axes, edges: Sequence[Sequence], title: str) -> None:
    """Draw one cell of a genotype on ``ax``: one labelled arrow per ``(op, input)`` edge.

    Edges whose input is not an earlier node are skipped rather than drawn wrongly.
    """
    nodes = (len(edges) + 1) // 2
    positions = _node_positions(nodes)
    labels = ["$c_{k-2}$", "$c_{k-1}$", *map(str, range(nodes)), "$c_{k}$"]
    kinds = ["input", "input", *["node"] * nodes, "output"]
    circles = [_draw_node(ax, *node) for node in zip(positions, labels, kinds, strict=True)]
    placed: list[tuple] = []
    for j, (op, src) in enumerate(edges):
        src, dst = int(src), j // 2 + 2
        if 0 <= src < dst:
            rad = _pick_arc(positions, src, dst, placed)
            placed.append(_draw_edge(ax, circles, src, dst, rad, str(op)))
    out = len(circles) - 1
    for node in range(2, out):
        _draw_edge(ax, circles, node, out, _pick_arc(positions, node, out, None), None)
    ax.set_xlim(-0.6, _STEP * (nodes + 1) + 0.6)
    ax.set_ylim(-2.0, 2.0)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=10)


_CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}


def genotype_figure(genotype: Mapping) -> Figure | None:
    """The searched normal and reduction cells side by side; None without edges."""
    cells = [(name, genotype[name]) for name in _CELL_TITLES if genotype.get(name)]
    if not cells:
        return None
    widths = [_STEP * ((len(edges) + 1) // 2 + 1) + 1.2 for _, edges in cells]
    fig = Figure(figsize=(0.85 * sum(widths) + 0.5, 3.6), layout="constrained")
    axes = fig.subplots(1, len(cells), squeeze=False, width_ratios=widths)[0]
    for ax, (name, edges) in zip(axes, cells, strict=True):
        draw_cell(ax, edges, _CELL_TITLES[name])
    return fig


def edge_labels(num_edges: int) -> list[str]:
    """Names of a DARTS cell's mixed edges, node by node, each from every earlier state.

    Node ``k`` has ``k + 2`` incoming mixed edges; a count that fits no cell gets ``edge i``.
    """
    labels, node = [], 0
    while len(labels) < num_edges:
        sources = ["$c_{k-2}$", "$c_{k-1}$", *map(str, range(node))]
        labels += [f"{src} → {node}" for src in sources]
        node += 1
    return labels if len(labels) == num_edges else [f"edge {i}" for i in range(num_edges)]


def alphas_figure(alphas: Mapping, primitives: Sequence[str] | None = None) -> Figure | None:
    """DARTS: heat map of the softmaxed architecture weights (edge x primitive) per cell type.

    Args:
        alphas: ``{"normal": [[p, ...] per edge], "reduce": [...]}``.
        primitives: operation names of the columns; ``op j`` when not given.

    Returns:
        The figure, or None when no cell has weights.
    """
    cells = [(n, np.asarray(alphas[n], dtype=float)) for n in _CELL_TITLES if alphas.get(n)]
    cells = [(name, weights) for name, weights in cells if weights.ndim == 2]
    if not cells:
        return None
    rows, cols = cells[0][1].shape
    fig = Figure(figsize=(2.2 + 2.6 * len(cells) + 0.3 * cols, 1.4 + 0.28 * rows))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, len(cells), squeeze=False)[0]
    top = max(float(w.max()) for _, w in cells) or 1.0
    for ax, (name, weights) in zip(axes, cells, strict=True):
        image = _alpha_heat_map(ax, weights, primitives, top)
        ax.set_title(_CELL_TITLES[name], fontsize=10)
    fig.colorbar(image, ax=list(axes), label="softmax weight", shrink=0.8)
    return fig


def _alpha_heat_map(ax: Axes, weights: np.ndarray, primitives, top: float):
    rows, cols = weights.shape
    names = list(primitives) if primitives and len(primitives) == cols else None
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=top, aspect="auto")
    ax.set_xticks(range(cols), names or [f"op {j}" for j in range(cols)], rotation=45, ha="right")
    ax.set_yticks(range(rows), edge_labels(rows))
    ax.tick_params(labelsize=7)
    if rows * cols <= 120:
        for (i, j), value in np.ndenumerate(weights):
            colour = "black" if value > 0.6 * top else "white"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color=colour)
    return image
