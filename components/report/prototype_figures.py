"""Figures of a prototype model's own explanations: the prototype gallery and "this looks like
that".

The gallery shows every prototype, one line per class: a pushed prototype (ProtoPNet family) as
its source training sample with its similarity map overlaid and its region boxed, beside the
region's crop; a decoded prototype (PrototypeDL family) as the decoded input. Large galleries
(hundreds of prototypes, 224x224 photos) are split into pages of whole classes and capped, so the
report stays a sane size. "This looks like that" gives each explained test sample a row: the
sample with the region matching each top prototype boxed in that prototype's colour, then per
prototype the test region ("this") beside the prototype's own region ("that").

Gallery and sample dicts are :func:`components.explain.explain_model`'s; inputs are drawn in
their natural scale through an :class:`~components.report.display.InputScale`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from components.report.display import (
    InputScale,
    draw_crop,
    draw_region,
    draw_sample,
    draw_similarity,
    is_image,
    is_signal,
)
from components.report.figures import LABEL_WIDTH, class_label, label_sample

GALLERY_LIMIT = 80  # prototypes drawn in the report; the rest are counted in the caption
PAGE_LINES = 10  # lines of prototypes per gallery figure
REGION_COLOURS = ("#ffd400", "#00e5ff", "#ff3df5", "#7cfc00", "#ff8c00", "#ffffff")
_TITLE = 7  # font size of panel titles
_GAP = 0.12  # width of the blank column between prototypes, as a share of a panel


@dataclass(frozen=True)
class GalleryPage:
    """One figure of the gallery and the classes it shows."""

    figure: Figure
    classes: list[str]
    num_prototypes: int


def _panel_size(scale: InputScale) -> tuple[float, float]:
    """Inches per panel: square pictures, wide signals, taller bar charts."""
    if is_image(scale.feature_shape):
        return 1.25, 1.3
    if is_signal(scale.feature_shape):
        return 2.2, 1.25
    return 1.9, 1.5


def _cards_per_line(scale: InputScale, pushed: bool) -> int:
    """Prototypes per gallery line: a line stays about 13 inches wide."""
    if is_image(scale.feature_shape):
        return 5 if pushed else 10
    return 3 if pushed else 6


def _class_groups(classes: Sequence[int | None], limit: int) -> tuple[list[tuple], int]:
    """``[(class, [prototype indices])]`` in class order, whole classes up to ``limit``
    prototypes (a first class larger than that is cut); and how many prototypes are shown."""
    order: dict[int | None, list[int]] = {}
    for j, k in sorted(enumerate(classes), key=lambda jk: (jk[1] is None, jk[1] or 0, jk[0])):
        order.setdefault(k, []).append(j)
    groups, shown = [], 0
    for k, members in order.items():
        if shown + len(members) > limit:
            if not groups:
                groups.append((k, members[:limit]))
                shown = limit
            break
        groups.append((k, members))
        shown += len(members)
    return groups, shown


def _lines(groups: Sequence[tuple], per_line: int) -> list[tuple]:
    """Gallery lines ``(class or None, first line of its class?, [prototype indices])``."""
    return [
        (k, start == 0, members[start : start + per_line])
        for k, members in groups
        for start in range(0, len(members), per_line)
    ]


def gallery_pages(
    gallery: Mapping, scale: InputScale, class_names: Sequence[str], limit: int = GALLERY_LIMIT
) -> tuple[list[GalleryPage], int]:
    """The prototype gallery as figures of at most :data:`PAGE_LINES` lines each.

    Args:
        gallery: ``images``, ``classes`` and, for pushed prototypes, ``boxes`` and ``maps``.
        scale: how inputs are drawn.
        class_names: names of the classes.
        limit: most prototypes drawn (whole classes, in class order).

    Returns:
        The pages and the number of prototypes they show.
    """
    images = np.asarray(gallery["images"])
    classes = list(gallery.get("classes") or [None] * len(images))
    pushed = bool(gallery.get("boxes"))
    groups, shown = _class_groups(classes, limit)
    per_line = max(1, min(_cards_per_line(scale, pushed), max(len(m) for _, m in groups)))
    lines = _lines(groups, per_line)
    pages = []
    for start in range(0, len(lines), PAGE_LINES):
        page = lines[start : start + PAGE_LINES]
        figure = _gallery_figure(gallery, page, per_line, scale, class_names)
        names = [class_label(class_names, k) for k, first, _ in page if first and k is not None]
        pages.append(GalleryPage(figure, names, sum(len(m) for _, _, m in page)))
    return pages, shown


def _gallery_figure(gallery, lines, per_line: int, scale: InputScale, class_names) -> Figure:
    pushed = bool(gallery.get("boxes"))
    panels = 2 if pushed else 1
    width, height = _panel_size(scale)
    fig = Figure(
        figsize=(width * per_line * panels + 1.2, height * len(lines)), layout="constrained"
    )
    axes = fig.subplots(len(lines), per_line * panels, squeeze=False)
    for row, (k, first, members) in enumerate(lines):
        for ax in axes[row, len(members) * panels :]:
            ax.set_axis_off()
        for slot, j in enumerate(members):
            cells = axes[row, slot * panels : (slot + 1) * panels]
            _draw_prototype(cells, gallery, j, scale)
        if k is not None:
            label = class_label(class_names, k, LABEL_WIDTH) + ("" if first else "\n(cont.)")
            axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return fig


def _draw_prototype(cells: Sequence[Axes], gallery: Mapping, j: int, scale: InputScale) -> None:
    """Prototype ``j``: its source with similarity and region, and the crop; or the decoded
    prototype alone."""
    image = np.asarray(gallery["images"])[j]
    draw_sample(cells[0], image, scale)
    cells[0].set_title(f"P{j}", fontsize=_TITLE)
    if len(cells) == 1:
        return
    box = gallery["boxes"][j]
    if gallery.get("maps") is not None:
        draw_similarity(cells[0], np.asarray(gallery["maps"][j]), scale)
    draw_region(cells[0], box, scale, REGION_COLOURS[0])
    draw_crop(cells[1], image, box, scale, REGION_COLOURS[0])


def _prototype_title(proto: Mapping, class_names: Sequence[str]) -> str:
    return f"P{proto['index']}: {class_label(class_names, proto['class'], LABEL_WIDTH)}"


def _evidence(proto: Mapping) -> str:
    return f"sim {proto['similarity']:.3g}\n{proto['contribution']:+.3g} to logit"


def sample_explanations_figure(
    samples: Sequence[Mapping],
    inputs: np.ndarray,
    gallery: Mapping | None,
    scale: InputScale,
    class_names: Sequence[str],
) -> Figure:
    """One row per sample: the sample, then for each top prototype "this looks like that".

    Part prototypes (``box`` in the sample's prototype dicts) get the sample with every region
    boxed in its prototype's colour, then per prototype the sample's region ("this") and the
    prototype's region on its source ("that", when the gallery has ``boxes``); decoded
    prototypes get one panel each. Titles carry the class names, similarity and contribution.
    """
    regions = any("box" in p for s in samples for p in s["prototypes"])
    per_prototype = 2 if regions else 1
    top_k = max(len(s["prototypes"]) for s in samples)
    width, height = _panel_size(scale)
    # a narrow blank column before each prototype groups its panels
    ratios = [1.3] + ([_GAP] + [1.0] * per_prototype) * top_k
    fig = Figure(
        figsize=(width * sum(ratios) + 0.4, (height + 0.7) * len(samples)), layout="constrained"
    )
    grid = fig.subplots(len(samples), len(ratios), squeeze=False, width_ratios=ratios)
    for ax in grid[:, 1 :: per_prototype + 1].flat:
        ax.set_axis_off()
    axes = np.delete(grid, np.s_[1 :: per_prototype + 1], axis=1)
    for row, sample in enumerate(samples):
        draw_sample(axes[row, 0], inputs[row], scale)
        label_sample(axes[row, 0], sample, class_names, _TITLE)
        for ax in axes[row, 1 + per_prototype * len(sample["prototypes"]) :]:
            ax.set_axis_off()
        for slot, proto in enumerate(sample["prototypes"]):
            cells = axes[row, 1 + slot * per_prototype : 1 + (slot + 1) * per_prototype]
            colour = REGION_COLOURS[slot % len(REGION_COLOURS)]
            if regions:
                draw_region(axes[row, 0], proto["box"], scale, colour)
                cells = _draw_this_and_that(cells, inputs[row], proto, gallery, scale, colour)
            else:
                draw_sample(cells[0], np.asarray(gallery["images"])[proto["index"]], scale)
            cells[-1].set_title(_prototype_title(proto, class_names), fontsize=_TITLE)
            cells[-1].set_xlabel(_evidence(proto), fontsize=_TITLE)
    return fig


def _draw_this_and_that(cells, values, proto: Mapping, gallery, scale, colour: str):
    """The sample's region matching ``proto`` beside the prototype's own region (when the
    gallery has it); returns the panels drawn."""
    draw_crop(cells[0], values, proto["box"], scale, colour)
    if gallery is None or not gallery.get("boxes"):
        cells[1].set_axis_off()
        return cells[:1]
    cells[0].set_title("this looks like", fontsize=_TITLE)
    j = proto["index"]
    draw_crop(cells[1], np.asarray(gallery["images"])[j], gallery["boxes"][j], scale, colour)
    return cells
