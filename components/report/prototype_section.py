"""The prototype part of the report's "Explanations" section: the gallery and "this looks like
that" (figures in :mod:`components.report.prototype_figures`), with captions that say how the
regions were found and what a capped gallery left out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from components.report.display import InputScale
from components.report.figure_set import FigureSet
from components.report.prototype_figures import (
    GALLERY_LIMIT,
    gallery_pages,
    sample_explanations_figure,
)


def _has_regions(samples: Sequence[Mapping]) -> bool:
    return any("box" in p for s in samples for p in s.get("prototypes", []))


_REGION_RULE = (
    "the prototype's similarity map upsampled to the input (bicubic), boxed where it is at or "
    "above its 95th percentile (ProtoPNet)"
)


def gallery_parts(
    gallery: Mapping, scale: InputScale, names: Sequence[str], figures: FigureSet
) -> list[str]:
    """The gallery's pages (:func:`gallery_pages`), captioned with what is drawn and what was
    left out."""
    pages, shown = gallery_pages(gallery, scale, names, GALLERY_LIMIT)
    total = len(gallery["images"])
    if gallery.get("boxes"):
        what = (
            "Each prototype (P<index>) on the training sample it was pushed onto, its similarity "
            f"overlaid (warm: high), and its region: {_REGION_RULE}; one line per class"
        )
    else:
        what = "Decoded prototypes (P<index>), one line per class they vote for"
    if shown < total:
        what += f"; showing {shown} of {total} prototypes (the first classes)"
    parts = ["<h3>Prototypes</h3>"]
    for number, page in enumerate(pages, start=1):
        name = "prototype_gallery" if number == 1 else f"prototype_gallery_{number}"
        classes = f" (classes {page.classes[0]} to {page.classes[-1]})" if page.classes else ""
        caption = what if number == 1 else "Prototypes, continued"
        caption += f". Page {number} of {len(pages)}{classes}" if len(pages) > 1 else ""
        parts.append(figures.add(name, page.figure, caption))
    return parts


def _samples_caption(samples: Sequence[Mapping]) -> str:
    # a predict run's inputs: their true class where they name it
    shown = "Test samples" if all(s["true"] is not None for s in samples) else "Inputs"
    if _has_regions(samples):
        return (
            f"{shown} (true and predicted class) and their top prototypes: each region of "
            "the sample ('this', boxed in the prototype's colour) looks like the prototype's "
            f"region on its training sample ('that'); regions are {_REGION_RULE}. sim: "
            "similarity; the contribution to the predicted logit is sim times the last-layer "
            "weight"
        )
    return (
        f"{shown} (true and predicted class) and their top prototypes, with similarity and "
        "contribution to the predicted logit"
    )


def sample_explanation_parts(
    samples: Sequence[Mapping],
    inputs: np.ndarray,
    gallery: Mapping | None,
    scale: InputScale,
    class_names: Sequence[str],
    figures: FigureSet,
) -> list[str]:
    """The "this looks like that" figure, when there is a gallery or regions to draw."""
    if gallery is None and not _has_regions(samples):
        return []
    fig = sample_explanations_figure(samples, inputs, gallery, scale, class_names)
    return [figures.add("sample_explanations", fig, _samples_caption(samples))]
