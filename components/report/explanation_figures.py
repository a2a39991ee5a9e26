"""Figures of explanations: prototype gallery, "this looks like that" rows, attribution maps.

:func:`attribution_figure` pairs each input with its Integrated Gradients map;
:func:`attribution_grid_figure` sets any number of attribution methods side by side.

Samples are drawn as images when the feature shape is ``(C, H, W)`` with 1 or 3 channels, and as
bar plots of the feature values otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from components.report.figures import class_label

_CELL = 1.9  # inches per small panel
_RED, _BLUE = "#c0392b", "#2e86c1"
ATTRIBUTION_CMAP = "RdBu_r"  # diverging: red raises the logit, blue lowers it


def is_image(feature_shape: Sequence[int]) -> bool:
    """True for ``(C, H, W)`` with 1 (grey) or 3 (RGB) channels."""
    return len(feature_shape) == 3 and feature_shape[0] in (1, 3)


def draw_sample(ax: Axes, values: np.ndarray, feature_shape: Sequence[int]) -> None:
    """An input or decoded prototype, min-max scaled for display (inputs are standardised)."""
    values = np.asarray(values, dtype=float)
    if is_image(feature_shape):
        image = values.reshape(feature_shape)
        low, high = image.min(), image.max()
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
        if feature_shape[0] == 1:
            ax.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(np.transpose(image, (1, 2, 0)))
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        flat = values.ravel()
        ax.bar(np.arange(flat.size), flat, color="#4c8bc9")
        ax.axhline(0.0, color="#666666", linewidth=0.6)
        ax.tick_params(labelsize=6)


def draw_attribution(
    ax: Axes,
    values: np.ndarray,
    feature_shape: Sequence[int],
    top_k: int | None = None,
    feature_names: Sequence[str] | None = None,
) -> float:
    """Signed attributions: red adds to the logit, blue takes away; symmetric colour scale.

    Images become one heat map (channels summed); other shapes a bar per feature, or, with
    ``top_k``, horizontal bars of the ``top_k`` largest by magnitude, named by ``feature_names``
    (default ``x<i>``). Returns the scale's limit, the largest magnitude (1 when all are 0).
    """
    values = np.asarray(values, dtype=float)
    if is_image(feature_shape):
        # one map per pixel: channels are summed, as a pixel's total share of the logit
        values = values.reshape(feature_shape).sum(axis=0)
    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    limit = float(np.abs(finite).max(initial=0.0)) or 1.0
    if is_image(feature_shape):
        ax.imshow(values, cmap=ATTRIBUTION_CMAP, vmin=-limit, vmax=limit)
        ax.set_xticks([])
        ax.set_yticks([])
    elif top_k is not None:
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


def _draw_box(ax: Axes, gallery: Mapping, index: int) -> None:
    """Mark the patch a pushed prototype came from (a no-op for decoded galleries)."""
    boxes = gallery.get("boxes")
    if not boxes:
        return
    top, left, height, width = boxes[index]
    ax.add_patch(
        Rectangle((left - 0.5, top - 0.5), width, height, fill=False, edgecolor="#ffd400", lw=1.5)
    )


def _grid(rows: int, cols: int, aspect: float = 1.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(_CELL * cols, _CELL * aspect * rows), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def prototype_gallery_figure(
    gallery: Mapping, feature_shape: Sequence[int], class_names: Sequence[str]
) -> Figure:
    """Every decoded prototype, titled with its index and the class it stands for."""
    images = np.asarray(gallery["images"])
    classes = list(gallery["classes"])
    cols = min(len(images), 8)
    rows = -(-len(images) // cols)
    fig, axes = _grid(rows, cols)
    for j, ax in enumerate(axes.flat):
        if j >= len(images):
            ax.set_axis_off()
            continue
        draw_sample(ax, images[j], feature_shape)
        _draw_box(ax, gallery, j)
        ax.set_title(f"P{j}: {class_label(class_names, classes[j])}", fontsize=8)
    return fig


def _sample_title(sample: Mapping, class_names: Sequence[str]) -> str:
    true = class_label(class_names, sample["true"])
    predicted = class_label(class_names, sample["predicted"])
    return f"#{sample['index']} true {true}\npredicted {predicted}"


def sample_explanations_figure(
    samples: Sequence[Mapping],
    inputs: np.ndarray,
    gallery: Mapping,
    feature_shape: Sequence[int],
    class_names: Sequence[str],
) -> Figure:
    """One row per sample: the input, then its top prototypes with distance and contribution."""
    top_k = max(len(s["prototypes"]) for s in samples)
    fig, axes = _grid(len(samples), top_k + 1, aspect=1.15)
    images = np.asarray(gallery["images"])
    for row, sample in enumerate(samples):
        draw_sample(axes[row, 0], inputs[row], feature_shape)
        axes[row, 0].set_title(_sample_title(sample, class_names), fontsize=8)
        for col in range(1, top_k + 1):
            ax = axes[row, col]
            if col > len(sample["prototypes"]):
                ax.set_axis_off()
                continue
            proto = sample["prototypes"][col - 1]
            draw_sample(ax, images[proto["index"]], feature_shape)
            _draw_box(ax, gallery, proto["index"])
            ax.set_title(
                f"P{proto['index']} ({class_label(class_names, proto['class'])})\n"
                f"d={proto['distance']:.3g} c={proto['contribution']:+.3g}",
                fontsize=8,
            )
    return fig


def attribution_figure(
    samples: Sequence[Mapping],
    inputs: np.ndarray,
    attributions: np.ndarray,
    feature_shape: Sequence[int],
    class_names: Sequence[str],
) -> Figure:
    """Inputs beside their Integrated Gradients maps for the predicted class."""
    cols = 2 * min(len(samples), 3)
    rows = -(-2 * len(samples) // cols)
    fig, axes = _grid(rows, cols)
    flat_axes = list(axes.flat)
    for i, sample in enumerate(samples):
        image_ax, attribution_ax = flat_axes[2 * i], flat_axes[2 * i + 1]
        draw_sample(image_ax, inputs[i], feature_shape)
        image_ax.set_title(_sample_title(sample, class_names), fontsize=8)
        draw_attribution(attribution_ax, attributions[i], feature_shape)
        attribution_ax.set_title(f"IG, sum={float(np.sum(attributions[i])):+.3g}", fontsize=8)
    for ax in flat_axes[2 * len(samples) :]:
        ax.set_axis_off()
    return fig


def attribution_grid_figure(
    inputs: np.ndarray,
    maps: Mapping[str, np.ndarray],
    feature_shape: Sequence[int],
    row_labels: Sequence[str],
    top_k: int = 10,
    feature_names: Sequence[str] | None = None,
) -> Figure:
    """One row per sample: its input, then one attribution map per column title in ``maps``.

    ``maps`` holds, per column title, the samples' attributions (``(n, *feature_shape)`` or
    ``(n, D)``). Each cell has its own symmetric colour scale, written under it (``±limit``);
    non-image samples show their ``top_k`` features by magnitude as horizontal bars.
    """
    image = is_image(feature_shape)
    fig, axes = _grid(len(inputs), len(maps) + 1, aspect=1.0 if image else 1.2)
    for row, values in enumerate(inputs):
        draw_sample(axes[row, 0], values, feature_shape)
        axes[row, 0].set_ylabel(row_labels[row], fontsize=8)
        for col, (title, attributions) in enumerate(maps.items(), start=1):
            ax = axes[row, col]
            limit = draw_attribution(ax, attributions[row], feature_shape, top_k, feature_names)
            if image:
                ax.set_xlabel(f"±{limit:.2g}", fontsize=7)
            if row == 0:
                ax.set_title(title, fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    return fig
