"""Figures of a continual-learning run: accuracy matrices as heat maps, learning-rate schedules.

``R[i][j]`` is the accuracy on task ``j`` after training on tasks ``0..i`` (see
:mod:`components.continual.metrics`); entries may be None or NaN (not measured) and are left
blank. All heat maps share the colour scale 0..1 so panels can be compared by colour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from components.report.figures import LABEL_WIDTH, wrap_label

_CMAP = "viridis"
_MAX_COLS = 3


def as_matrix(R: Sequence[Sequence[float | None]] | None) -> np.ndarray:
    """``R`` as a float array; None becomes NaN and short (ragged) rows are padded with NaN."""
    rows = [[np.nan if v is None else float(v) for v in row] for row in (R or [])]
    width = max((len(row) for row in rows), default=0)
    return np.asarray([row + [np.nan] * (width - len(row)) for row in rows], dtype=float).reshape(
        len(rows), width
    )


def task_labels(count: int, tasks: Sequence[Sequence[int | str]] | None) -> list[str]:
    """Tick labels ``j`` for ``count`` tasks, with each task's classes below when known."""
    if tasks is None or len(tasks) != count:
        return [str(j) for j in range(count)]
    return [f"{j}\n{_task_classes(classes)}" for j, classes in enumerate(tasks)]


def _task_classes(classes: Sequence[int | str]) -> str:
    """``(3,7)`` for indices or short names; one shortened name per line for long ones."""
    names = [str(c) for c in classes]
    if all(len(name) <= 3 for name in names):
        return f"({','.join(names)})"
    return "\n".join(wrap_label(name, LABEL_WIDTH, max_lines=1) for name in names)


def accuracy_matrices_figure(
    matrices: Mapping[str, Sequence[Sequence[float | None]]],
    tasks: Sequence[Sequence[int | str]] | None = None,
) -> Figure | None:
    """One heat-map panel of ``R`` per name, each cell's value written in it; None without data.

    Args:
        matrices: panel title (e.g. the method) -> its accuracy matrix ``R``.
        tasks: the classes (indices or names) of each task, shown under the column labels when
            their count fits.

    Returns:
        The figure, or None when every matrix is empty.
    """
    panels = [(name, as_matrix(R)) for name, R in matrices.items()]
    panels = [(name, R) for name, R in panels if R.size]
    if not panels:
        return None
    cols = min(len(panels), _MAX_COLS)
    rows = math.ceil(len(panels) / cols)
    size = max(max(R.shape) for _, R in panels)
    side = 1.6 + 0.55 * size
    fig = Figure(figsize=(side * cols + 1.0, side * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, R) in zip(axes, panels, strict=False):
        image = _heat_map(ax, R, tasks)
        ax.set_title(name, fontsize=10)
    fig.colorbar(image, ax=axes[: len(panels)], label="accuracy", shrink=0.8)
    return fig


def _heat_map(ax: Axes, R: np.ndarray, tasks):
    cmap = colormaps[_CMAP].with_extremes(bad="white")  # NaN cells (not measured) stay blank
    image = ax.imshow(np.ma.masked_invalid(R), cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_xticks(range(R.shape[1]), task_labels(R.shape[1], tasks), fontsize=7)
    ax.set_yticks(range(R.shape[0]), [str(i) for i in range(R.shape[0])], fontsize=7)
    ax.set_xlabel("accuracy on task j", fontsize=9)
    ax.set_ylabel("after training task i", fontsize=9)
    for (i, j), value in np.ndenumerate(R):
        if np.isfinite(value):
            colour = "black" if value > 0.6 else "white"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    return image


def learning_rate_figure(lrs: Mapping[str, Sequence[float] | None]) -> Figure | None:
    """The learning rate per optimizer step over the stream, one line per method.

    Args:
        lrs: method -> learning rate per step; methods with None or no steps are left out.

    Returns:
        The figure, or None when no method has a schedule.
    """
    lines = {name: np.asarray(v, dtype=float) for name, v in lrs.items() if v is not None}
    lines = {name: v for name, v in lines.items() if v.size}
    if not lines:
        return None
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    ax = fig.subplots()
    for name, values in lines.items():
        ax.plot(np.arange(len(values)), values, linewidth=1.2, label=name)
    values = np.concatenate(list(lines.values()))
    finite = values[np.isfinite(values)]
    # a decaying schedule spans decades; linear would flatten its tail to the axis
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step (over the whole stream)")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
