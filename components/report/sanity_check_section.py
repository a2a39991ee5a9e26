"""The sanity check's part of the report's "Trust checks" section (``explain.checks=[sanity]``,
:mod:`components.explain.checks.sanity`): the similarity of each method's maps to the trained
model's as layers are randomised from the top (Adebayo et al. 2018's curve), the maps of one
test input after each step, and a table of the final similarities and flags.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from components.evaluation.attribution_similarity import is_image, saliency_maps
from components.report import markup
from components.report.figure_set import FigureSet

_NAMES = {"spearman": "Spearman rank correlation (|attribution|)", "ssim": "SSIM"}
_CONTROL = "edge_detector"


def section(result: Mapping, figures: FigureSet) -> str:
    """The HTML of the sanity check's ``result``; only the verdict when it did not apply."""
    if "curves" not in result:
        return ""
    parts = [
        markup.paragraph(_intro(result)),
        figures.add("sanity_curves", _curve_figure(result), _curve_caption(result)),
    ]
    if is_image(np.shape(result["input"])):
        caption = (
            "One test input (left), then each method's |attribution| map for the trained model "
            "and after each cumulative randomisation step (columns, top layer first); each map "
            "scaled to its 99th percentile."
        )
        parts.append(figures.add("sanity_maps", _maps_figure(result), caption))
    parts.append(_table(result))
    return "".join(parts)


def _intro(result: Mapping) -> str:
    return (
        "Cascading model-parameter randomisation (Adebayo et al. 2018): the model's layers are "
        "re-initialised one after another from the top, and every post-hoc method re-explains "
        "the same test inputs after each step. A method whose maps stay similar (above "
        f"{result['threshold']:g} {_NAMES[result['measure']]}) once every layer is random does "
        "not depend on what the model learned; it is flagged and not recommended. The edge "
        "detector ignores the model: it is the control that must be flagged."
    )


def _steps(result: Mapping) -> list[str]:
    return ["trained", *(f"+{layer or 'root'}" for layer in result["layers"])]


def _curve_figure(result: Mapping) -> Figure:
    measures = list(next(iter(result["curves"].values())))
    fig = Figure(figsize=(5.2 * len(measures), 3.6), layout="constrained")
    steps = _steps(result)
    for i, measure in enumerate(measures):
        ax = fig.add_subplot(1, len(measures), i + 1)
        for name, curves in result["curves"].items():
            style = {"linestyle": "--", "color": "grey"} if name == _CONTROL else {}
            ax.plot(range(len(steps)), [1.0, *curves[measure]], marker="o", label=name, **style)
        if measure == result["measure"]:
            ax.axhline(result["threshold"], color="red", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(len(steps)), steps, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(_NAMES[measure])
        ax.set_xlabel("layers randomised (cumulative, top first)")
        ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.05)
    fig.axes[0].legend(fontsize=7)
    return fig


def _curve_caption(result: Mapping) -> str:
    return (
        "Mean similarity of each method's maps to its maps of the trained model, per "
        "randomisation step; red dotted line: the flag threshold; grey dashed: the edge-detector "
        "control."
    )


def _maps_figure(result: Mapping) -> Figure:
    names = list(result["maps"])
    steps = _steps(result)
    fig = Figure(figsize=(1.3 * (len(steps) + 1), 1.3 * len(names)), layout="constrained")
    grid = fig.subplots(len(names), len(steps) + 1, squeeze=False)
    image = np.asarray(result["input"])
    shown = image.mean(axis=0) if image.shape[0] != 3 else _rgb(image)
    for row, name in enumerate(names):
        maps = saliency_maps(result["maps"][name], image=True)
        grid[row][0].imshow(shown, cmap="gray")
        grid[row][0].set_ylabel(name, fontsize=7)
        for col, m in enumerate(maps, start=1):
            grid[row][col].imshow(m, cmap="gray", vmin=0, vmax=1)
            if row == 0:
                grid[row][col].set_title(steps[col - 1], fontsize=6)
    grid[0][0].set_title("input (standardised)", fontsize=6)
    for ax in grid.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _rgb(image: np.ndarray) -> np.ndarray:
    rgb = np.moveaxis(image, 0, -1)
    return (rgb - rgb.min()) / max(float(rgb.max() - rgb.min()), 1e-12)


def _table(result: Mapping) -> str:
    names = list(result["curves"])
    measures = list(result["curves"][names[0]])
    rows = []
    for name in names:
        final = [result["curves"][name][m][-1] for m in measures]
        score = result["curves"][name][result["measure"]][-1]
        flagged = score > result["threshold"]
        status = "flagged" + ("" if name == _CONTROL else ", not recommended")
        rows.append((name, *final, status if flagged else "passes"))
    header = ("method", *(f"{_NAMES[m]} after all layers" for m in measures), "result")
    flagged_rows = {i for i, row in enumerate(rows) if row[-1] != "passes"}
    return markup.table(header, rows, highlight=flagged_rows)
