"""Figures of attributions: each input beside its attribution maps.

:func:`attribution_figure` pairs each input with its Integrated Gradients map;
:func:`attribution_grid_figure` sets any number of attribution methods side by side. Inputs are
drawn in their natural scale (:mod:`components.report.display`); the prototype figures are in
:mod:`components.report.prototype_figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from components.report.display import InputScale, draw_sample, is_image, is_signal
from components.report.figures import label_left, label_sample

__all__ = ["attribution_figure", "attribution_grid_figure", "draw_attribution", "is_image"]

_CELL = 1.9  # inches per small panel
_RED, _BLUE = "#c0392b", "#2e86c1"
ATTRIBUTION_CMAP = "RdBu_r"  # diverging: red raises the logit, blue lowers it


def draw_attribution(
    ax: Axes,
    values: np.ndarray,
    feature_shape: Sequence[int],
    top_k: int | None = None,
    feature_names: Sequence[str] | None = None,
) -> float:
    """Signed attributions: red adds to the logit, blue takes away; symmetric colour scale.

    Images become one heat map and signals one bar per position (channels summed); other shapes
    a bar per feature, or, with ``top_k``, horizontal bars of the ``top_k`` largest by
    magnitude, named by ``feature_names`` (default ``x<i>``). Returns the scale's limit, the
    largest magnitude (1 when all are 0).
    """
    values = np.asarray(values, dtype=float)
    signal = is_signal(feature_shape)
    if is_image(feature_shape) or signal:
        # one value per pixel or position: channels summed, its total share of the logit
        values = values.reshape(feature_shape).sum(axis=0)
    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    limit = float(np.abs(finite).max(initial=0.0)) or 1.0
    if is_image(feature_shape):
        ax.imshow(values, cmap=ATTRIBUTION_CMAP, vmin=-limit, vmax=limit)
        ax.set_xticks([])
        ax.set_yticks([])
    elif top_k is not None and not signal:
        _draw_top_features(ax, finite.ravel(), top_k, feature_names, limit)
    else:
        flat = values.ravel()
        ax.bar(np.arange(flat.size), flat, color=np.where(flat >= 0, _RED, _BLUE))
        ax.axhline(0.0, color="#666666", linewidth=0.6)
        ax.tick_params(labelsize=6)
    return limit


def _draw_top_features(
    ax: Axes, flat: np.ndarray, top_k: int, names: Sequence[str] | None, limit: float
) -> None:
    """Horizontal bars of the ``top_k`` features with the largest magnitude, largest on top."""
    order = np.argsort(-np.abs(flat), kind="stable")[:top_k]
    rows = np.arange(order.size)
    ax.barh(rows, flat[order], color=np.where(flat[order] >= 0, _RED, _BLUE))
    labels = [str(names[i]) if names and i < len(names) else f"x{i}" for i in order]
    ax.set_yticks(rows, labels)
    ax.invert_yaxis()
    ax.set_xlim(-limit, limit)
    ax.axvline(0.0, color="#666666", linewidth=0.6)
    ax.tick_params(labelsize=6)


def _draw_tabular_or(ax: Axes, values, sample, scale: InputScale, top_k: int) -> float:
    """:func:`draw_attribution` of one sample; a table's word columns as one bar each."""
    if not scale.categories:
        return draw_attribution(ax, values, scale.feature_shape, top_k, scale.feature_names)
    summed, names = scale.by_column(values, sample)
    return draw_attribution(ax, summed, summed.shape, top_k, names)


def _grid(rows: int, cols: int, aspect: float = 1.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(_CELL * cols, _CELL * aspect * rows), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def attribution_figure(
    samples: Sequence[Mapping],
    inputs: np.ndarray,
    attributions: np.ndarray,
    scale: InputScale,
    class_names: Sequence[str],
    top_k: int = 10,
) -> Figure:
    """Inputs (drawn by ``scale``) beside their Integrated Gradients maps for the predicted
    class; tabular samples show their ``top_k`` features, named by ``scale.feature_names`` (a
    word column's 0/1 features summed into one bar, :meth:`InputScale.by_column`)."""
    cols = 2 * min(len(samples), 3)
    rows = -(-2 * len(samples) // cols)
    fig, axes = _grid(rows, cols)
    flat_axes = list(axes.flat)
    for i, sample in enumerate(samples):
        image_ax, attribution_ax = flat_axes[2 * i], flat_axes[2 * i + 1]
        draw_sample(image_ax, inputs[i], scale)
        label_sample(image_ax, sample, class_names)
        _draw_tabular_or(attribution_ax, attributions[i], inputs[i], scale, top_k)
        attribution_ax.set_title(f"IG, sum={float(np.sum(attributions[i])):+.3g}", fontsize=8)
    for ax in flat_axes[2 * len(samples) :]:
        ax.set_axis_off()
    return fig


def attribution_grid_figure(
    inputs: np.ndarray,
    maps: Mapping[str, np.ndarray],
    scale: InputScale,
    row_labels: Sequence[str],
    top_k: int = 10,
) -> Figure:
    """One row per sample: its input, then one attribution map per column title in ``maps``.

    ``maps`` holds, per column title, the samples' attributions (``(n, *feature_shape)`` or
    ``(n, D)``); ``scale`` draws the inputs and gives the feature shape. Each cell has its own
    symmetric colour scale, written under it (``±limit``); tabular samples show their ``top_k``
    features by magnitude as horizontal bars, named by ``scale.feature_names``.
    """
    feature_shape = scale.feature_shape
    image = is_image(feature_shape)
    fig, axes = _grid(len(inputs), len(maps) + 1, aspect=1.0 if image else 1.2)
    for row, values in enumerate(inputs):
        draw_sample(axes[row, 0], values, scale)
        label_left(axes[row, 0], row_labels[row])
        for col, (title, attributions) in enumerate(maps.items(), start=1):
            ax = axes[row, col]
            limit = _draw_tabular_or(ax, attributions[row], values, scale, top_k)
            if image:
                ax.set_xlabel(f"±{limit:.2g}", fontsize=7)
            if row == 0:
                ax.set_title(title, fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    return fig
