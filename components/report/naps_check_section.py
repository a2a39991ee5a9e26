"""The ``naps`` trust check's report section: per class its neural activation pattern's size,
recall and property violations, which class pairs are exclusive, and a heatmap of the patterns
(:mod:`components.explain.checks.naps`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from components.report import markup
from components.report.figure_set import FigureSet
from components.report.figures import class_label

MAX_NEURONS = 256  # heatmap columns; a wider layer shows the neurons fixed in the most classes
MAX_PAIRS = 12  # non-exclusive class pairs listed by name
_COLOURS = {"inactive": "#4c72b0", "free": "#eeeeee", "active": "#dd8452"}


def section(result: Mapping, figures: FigureSet) -> str:
    """The check's HTML: an explanation, the per-class table, exclusivity, the heatmap."""
    if not result.get("applicable"):
        return ""
    names = result.get("class_names") or []
    patterns = np.asarray(result["patterns"])
    return (
        markup.paragraph(_intro(result))
        + markup.table(_HEADER, _rows(result, patterns, names))
        + markup.paragraph(_exclusivity(result, names))
        + figures.add(
            "naps_patterns",
            _heatmap(patterns, names),
            f"Each class's NAP over the neurons of {result['layer']}: fixed active, fixed "
            f"inactive, or free"
            + (
                f" (the {MAX_NEURONS} of {patterns.shape[1]} neurons fixed in the most classes)"
                if patterns.shape[1] > MAX_NEURONS
                else ""
            )
            + ".",
        )
    )


_HEADER = (
    "class",
    "mined from",
    "fixed active",
    "fixed inactive",
    "free",
    "test inputs",
    "recall",
    "satisfied by",
    "precision",
    "violations",
)


def _intro(r: Mapping) -> str:
    return (
        f"Each class's neural activation pattern (NAP; Geng et al. 2023) fixes the neurons of "
        f"layer {r['layer']} ({r['neurons']} neurons) that are active (inactive) on at least "
        f"{r['delta']:g} of its correctly classified training inputs; the rest are free. A "
        "test input satisfies a NAP when every fixed neuron agrees. Recall: the share of the "
        "class's test inputs that satisfy its NAP; violations: test inputs that satisfy it "
        "yet are predicted as another class (the paper's property, here checked on the test "
        "inputs, not proven over the NAP's region: no SMT/MILP verifier runs)."
    )


def _rows(r: Mapping, patterns: np.ndarray, names: Sequence[str]) -> list[list]:
    return [
        [
            class_label(names, c),
            r["mined_from"][c],
            int((patterns[c] == 1).sum()) if r["mined_from"][c] else None,
            int((patterns[c] == -1).sum()) if r["mined_from"][c] else None,
            int((patterns[c] == 0).sum()) if r["mined_from"][c] else None,
            r["support"][c],
            r["recall"][c],
            r["satisfied"][c],
            r["precision"][c],
            r["violations"][c],
        ]
        for c in range(len(patterns))
    ]


def _exclusivity(r: Mapping, names: Sequence[str]) -> str:
    open_pairs = r["non_exclusive"]
    text = (
        f"Exclusivity: {r['pairs'] - len(open_pairs)} of {r['pairs']} class pairs have a "
        "neuron fixed active in one NAP and inactive in the other, so no input satisfies both."
    )
    if not open_pairs:
        return text
    listed = ", ".join(
        f"{class_label(names, a)} / {class_label(names, b)}" for a, b in open_pairs[:MAX_PAIRS]
    )
    more = f" and {len(open_pairs) - MAX_PAIRS} more" if len(open_pairs) > MAX_PAIRS else ""
    return (
        f"{text} Not shown exclusive (no conflicting neuron; a verifier would decide): "
        f"{listed}{more}."
    )


def _heatmap(patterns: np.ndarray, names: Sequence[str]) -> Figure:
    shown = _shown_neurons(patterns)
    fig = Figure(figsize=(min(12.0, 3 + 0.04 * len(shown)), 1.2 + 0.3 * len(patterns)))
    ax = fig.subplots()
    ax.imshow(
        patterns[:, shown],
        cmap=ListedColormap(list(_COLOURS.values())),
        vmin=-1,
        vmax=1,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_yticks(range(len(patterns)), [class_label(names, c) for c in range(len(patterns))])
    ax.set_xlabel("neuron" if len(shown) == patterns.shape[1] else "neuron (columns: see caption)")
    if len(shown) < patterns.shape[1]:
        ax.set_xticks([])
    handles = [Patch(color=colour, label=name) for name, colour in _COLOURS.items()]
    ax.legend(handles=handles[::-1], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    return fig


def _shown_neurons(patterns: np.ndarray) -> np.ndarray:
    if patterns.shape[1] <= MAX_NEURONS:
        return np.arange(patterns.shape[1])
    fixed = (patterns != 0).sum(axis=0)
    return np.sort(np.argsort(-fixed, kind="stable")[:MAX_NEURONS])
