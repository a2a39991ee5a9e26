"""The ``beyond`` trust check's report section: the detection table (per attack its success
rate, detection AUROCs and the share the threshold rule flags) and score histograms, clean vs
each attack's adversarial inputs (:mod:`components.explain.checks.beyond`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from components.report import markup
from components.report.figure_set import FigureSet

_SCORES = (
    ("score", "combined score (k-th largest)"),
    ("consistency", "label consistency"),
    ("similarity", "representation similarity"),
)


def section(result: Mapping, figures: FigureSet) -> str:
    """The section's HTML (the verdict is printed above it by the checks section)."""
    settings = result["settings"]
    intro = markup.paragraph(
        f"Each test input gets {settings['neighbours']} augmented neighbours; the SSL model "
        "labels them (linear head) and embeds them. Label consistency: the share of neighbours "
        "labelled as the classifier labels the input; representation similarity: the "
        f"{settings['k']}-th largest cosine between the input's and its neighbours' "
        f"representations; the AUROC uses the paper's combined score ({settings['alpha']:g} x "
        f"label agreement + {1 - settings['alpha']:g} x cosine, {settings['k']}-th largest). "
        f"The rule flags an input when either of the first two falls below its threshold "
        f"(set on clean validation inputs to flag at most {settings['clean_fpr']:.0%} of them). "
        f"Clean: the {len(result['clean']['score'])} test inputs classified right. "
        f"Encoder: {result['encoder']}."
    )
    rows = [
        (
            row["name"],
            row["success_rate"],
            row["adversarial"],
            row["auroc"],
            row["auroc_consistency"],
            row["auroc_similarity"],
            row["detected"],
        )
        for row in result["attacks"]
    ]
    header = (
        "attack",
        "success rate",
        "adversarial inputs",
        "AUROC (combined)",
        "AUROC (label consistency)",
        "AUROC (representation)",
        "flagged by the rule",
    )
    thresholds = result["thresholds"]
    rule = markup.paragraph(
        f"Thresholds: label consistency < {thresholds['consistency']:.3f} or representation "
        f"similarity < {thresholds['similarity']:.3f}; clean test inputs flagged: "
        f"{result['clean']['flagged']:.1%} (clean accuracy {result['clean_accuracy']:.1%}).",
        "note",
    )
    fig = figures.add(
        "beyond_scores",
        score_histograms(result),
        "BEYOND scores of clean test inputs and of each attack's successful adversarial inputs "
        "(lower is more suspicious); dashed: the rule's thresholds",
    )
    return intro + markup.table(header, rows) + rule + fig


def score_histograms(result: Mapping) -> Figure | None:
    """One panel per score: clean vs every attack's adversarial inputs."""
    if not result["clean"]["score"]:
        return None
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    axes = fig.subplots(1, len(_SCORES))
    bins = {"consistency": np.linspace(0, 1, 26)}
    for ax, (key, title) in zip(axes, _SCORES, strict=True):
        edges = bins.get(key, 25)
        ax.hist(result["clean"][key], bins=edges, alpha=0.5, density=True, label="clean")
        for row in result["attacks"]:
            if row[key]:
                ax.hist(row[key], bins=edges, histtype="step", density=True, label=row["name"])
        if key in result["thresholds"]:
            ax.axvline(result["thresholds"][key], color="black", linestyle="--")
        ax.set_title(title)
        ax.set_xlabel("score")
    axes[0].set_ylabel("density")
    axes[1].legend(fontsize=8, loc="upper left")
    return fig
