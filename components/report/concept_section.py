"""The concept part of the report's "Explanations" section, for concept models (those whose
explanations carry ``concept_maps``: ``cct``, Hong et al., WACV 2024).

Each explained test image (the same samples as the other explanation figures) gets a row: the
image with its true and predicted class, then, per concept, where the image's tokens attend to
that concept, upsampled from the token grid over the image. Every token's attention is a
distribution over the ``K`` concepts, so ``1/K`` means "no preference": the maps are coloured by
how far each token's attention lies above (red) or below (blue) that, transparent at ``1/K``, on
one scale for the whole figure. Concepts learned without supervision often stay close to
uniform; a fixed 0..1 scale would draw them blank, this one shows where they differ and the
colour bar says by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure

from components.report.display import (
    InputScale,
    draw_sample,
    draw_similarity,
    image_pixels,
    is_image,
)
from components.report.figure_set import FigureSet
from components.report.figures import label_sample

CONCEPTS_SHOWN = 16  # concept columns drawn; more concepts: those with the most attention
_TITLE = 7  # font size of panel titles
_PANEL = (1.25, 1.45)  # inches per panel (width, height with its label)
_UNDERLAY_ALPHA = 0.6  # the image under a map, in grey and faded, so the map's colours read
_LUMA = np.array([0.299, 0.587, 0.114])  # RGB -> grey (ITU-R BT.601)
# diverging: blue below uniform attention, red above; transparent at uniform
_COLOURS = colormaps["RdBu_r"](np.linspace(0.0, 1.0, 256))
_COLOURS[:, 3] = 0.85 * np.abs(np.linspace(-1.0, 1.0, 256)) ** 0.8
DEVIATION_CMAP = ListedColormap(_COLOURS, name="concept_attention")


def shown_concepts(maps: np.ndarray, limit: int = CONCEPTS_SHOWN) -> list[int]:
    """The concepts drawn, in index order: all of them, or the ``limit`` that receive the most
    attention over the shown images."""
    totals = np.asarray(maps, dtype=float).sum(axis=(0, 2, 3))
    return sorted(int(k) for k in np.argsort(-totals, kind="stable")[:limit])


def attention_norm(maps: np.ndarray) -> TwoSlopeNorm:
    """One colour scale for all maps: centred on uniform attention ``1/K``, as far above and
    below it as the furthest map value (within 0..1)."""
    maps = np.asarray(maps, dtype=float)
    uniform = 1.0 / maps.shape[1]
    reach = max(float(np.abs(maps - uniform).max(initial=0.0)), 1e-3)
    # one concept (K = 1) attends to everything: the scale still needs a top above its centre
    top = max(min(1.0, uniform + reach), uniform + 1e-3)
    return TwoSlopeNorm(uniform, max(0.0, uniform - reach), top)


def concept_maps_figure(
    samples: Sequence[Mapping],
    inputs: np.ndarray,
    maps: np.ndarray,
    scale: InputScale,
    class_names: Sequence[str],
    concepts: Sequence[int] | None = None,
) -> Figure:
    """One row per sample: the image (true and predicted class), then each of ``concepts``'
    attention map ``maps[row, k]`` ``(h, w)`` over the image, titled ``concept k`` and labelled
    with the concept's share of the image's attention (bold: the largest); one colour bar."""
    maps = np.asarray(maps, dtype=float)
    concepts = list(range(maps.shape[1])) if concepts is None else list(concepts)
    width, height = _PANEL
    columns = 1 + len(concepts)
    fig = Figure(figsize=(width * columns + 1.8, height * len(samples) + 0.3), layout="constrained")
    axes = fig.subplots(len(samples), columns, squeeze=False)
    norm, overlay = attention_norm(maps[:, concepts]), None
    for row, sample in enumerate(samples):
        draw_sample(axes[row, 0], inputs[row], scale)
        label_sample(axes[row, 0], sample, class_names, _TITLE)
        shares = maps[row].mean(axis=(1, 2))
        for ax, k in zip(axes[row, 1:], concepts, strict=True):
            _draw_underlay(ax, inputs[row], scale)
            overlay = draw_similarity(ax, maps[row, k], scale, DEVIATION_CMAP, norm)
            bold = k == int(np.argmax(shares))
            ax.set_xlabel(f"{shares[k]:.1%}", fontsize=_TITLE, fontweight="bold" if bold else None)
            if row == 0:
                ax.set_title(f"concept {k}", fontsize=_TITLE)
    axes[0, 0].set_title("test image", fontsize=_TITLE)
    if overlay is not None:
        bar = fig.colorbar(overlay, ax=axes[:, 1:], shrink=min(0.9, 2.5 / len(samples)))
        bar.set_label(f"attention on the concept (uniform: 1/{maps.shape[1]})", fontsize=_TITLE)
        bar.ax.tick_params(labelsize=_TITLE)
    return fig


def _draw_underlay(ax, values, scale: InputScale) -> None:
    """The image de-normalised, in faded grey: object colours would mix with the map's."""
    pixels = image_pixels(values, scale)
    grey = pixels if pixels.ndim == 2 else pixels @ _LUMA
    ax.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, alpha=_UNDERLAY_ALPHA)
    ax.set_xticks([])
    ax.set_yticks([])


def _caption(num_concepts: int, grid: tuple[int, ...], shown: int) -> str:
    caption = (
        "Concept attention: each explained test image (true and predicted class), then per "
        f"concept where the image attends to it. Every position of the {grid[0]}x{grid[1]} "
        f"token grid spreads its attention over the {num_concepts} concepts (the maps sum to 1 "
        "at each position); maps are upsampled bicubically over the image (in grey), red where "
        f"a position attends to the concept more than uniformly (1/{num_concepts}), blue where "
        "less, on one scale for the figure (colour bar). Under each map: the concept's share of "
        "the image's attention (bold: the largest)"
    )
    if shown < num_concepts:
        caption += f"; showing the {shown} of {num_concepts} concepts with the most attention"
    return caption


def concept_parts(
    explanations: Mapping, scale: InputScale, class_names: Sequence[str], figures: FigureSet
) -> list[str]:
    """The "Concepts" figure when ``explanations`` has ``concept_maps`` of image inputs."""
    maps = explanations.get("concept_maps")
    if maps is None or not is_image(scale.feature_shape):
        return []
    maps = np.asarray(maps, dtype=float)
    concepts = shown_concepts(maps)
    fig = concept_maps_figure(
        explanations["samples"],
        np.asarray(explanations["inputs"]),
        maps,
        scale,
        class_names,
        concepts,
    )
    caption = _caption(maps.shape[1], maps.shape[2:], len(concepts))
    return ["<h3>Concepts</h3>", figures.add("concept_maps", fig, caption)]
