"""The ``segmentation`` trust check's report section: Dice / IoU per map kind, test images with
their ground truth and predicted masks, and mean validation Dice against the threshold.

Draws the result of :func:`components.explain.checks.segmentation.run`; a "not applicable"
result (no ``kinds``) draws nothing beyond its verdict.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from components.report import markup
from components.report.figure_set import FigureSet

_TRUTH = np.array([0.1, 0.8, 0.2])  # green: ground truth
_PREDICTED = np.array([0.9, 0.1, 0.9])  # magenta: predicted mask


def section(result: Mapping, figures: FigureSet) -> str:
    """HTML for the check's result (tables and figures added to ``figures``)."""
    kinds = result.get("kinds")
    if not kinds:
        return ""
    return (
        markup.paragraph(
            "Each map of the predicted class is scaled to [0, 1] and thresholded; the "
            "threshold is the one with the highest mean Dice on validation images, and Dice / "
            "IoU are measured on test images against the region that decides the class."
        )
        + scores_table(kinds)
        + figures.add(
            "segmentation_overlays",
            overlays_figure(result.get("examples", {}), kinds),
            "Test images; on the dimmed image, the ground truth (green) and each map kind's "
            "predicted mask (magenta).",
        )
        + figures.add(
            "segmentation_threshold",
            threshold_figure(result["thresholds"], kinds),
            "Mean Dice on validation images against the threshold (fraction of each map's "
            "range); the dot marks the threshold used on test images.",
        )
    )


def scores_table(kinds: Mapping[str, Mapping]) -> str:
    """One row per map kind: test Dice (mean, median), IoU and the chosen threshold."""
    rows = [
        [
            k["label"],
            k["test"]["dice"],
            k["test"]["dice_median"],
            k["test"]["iou"],
            k["test"]["threshold"],
        ]  # fmt: skip
        for k in kinds.values()
    ]
    return markup.table(
        ["map", "Dice (mean)", "Dice (median)", "IoU (mean)", "threshold"],
        rows,
        highlight={0} if "model" in kinds else (),
    )


def overlays_figure(examples: Mapping, kinds: Mapping[str, Mapping]) -> Figure | None:
    """A row per test image: the image, its ground truth, then each kind's predicted mask."""
    images = np.asarray(examples.get("images", []))
    if not len(images):
        return None
    truth = np.asarray(examples["truth"], bool)
    columns = ["image", "ground truth", *(k["label"] for k in kinds.values())]
    fig = Figure(figsize=(1.6 * len(columns), 1.6 * len(images) + 0.4))
    axes = fig.subplots(len(images), len(columns), squeeze=False)
    for row, image in enumerate(images):
        panels = [image, _overlay(image, truth[row], _TRUTH)]
        panels += [
            _overlay(image, np.asarray(k["masks"][row], bool), _PREDICTED) for k in kinds.values()
        ]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col].replace(" (", "\n("), fontsize=7)
    fig.tight_layout()
    return fig


def threshold_figure(thresholds, kinds: Mapping[str, Mapping]) -> Figure:
    """Mean validation Dice against the threshold, one line per map kind."""
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.subplots()
    for kind in kinds.values():
        (line,) = ax.plot(thresholds, kind["val_dice"], label=kind["label"])
        chosen = kind["test"]["threshold"]
        best = kind["val_dice"][int(np.argmin(np.abs(np.asarray(thresholds) - chosen)))]
        ax.plot([chosen], [best], "o", color=line.get_color())
    ax.set_xlabel("threshold (fraction of the map's range)")
    ax.set_ylabel("mean Dice (validation)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _overlay(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``image`` dimmed to grey (so coloured parts cannot be mistaken for the mask) with
    ``mask``'s pixels painted ``colour``."""
    grey = 0.5 * np.asarray(image, dtype=float).mean(axis=2, keepdims=True)
    out = np.repeat(grey, 3, axis=2)
    out[mask] = 0.2 * out[mask] + 0.8 * colour
    return out
