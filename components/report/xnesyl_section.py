"""The report's "Explanation-guided training: X-NeSyL SHAP-Backprop" section (``train.xnesyl``).

Shown when the training history carries SHAP-Backprop's per-epoch figures (as
:func:`components.training.fit.fit` reports them from
:class:`components.training.xnesyl.XNeSyLWeights`): what ran, and a figure of the SHAP-GED
alignment and the share of misattributed training samples, epoch by epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from components.report import markup
from components.report.figure_set import FigureSet


def xnesyl_section(history: Sequence[Mapping], figures: FigureSet) -> str:
    """The section's HTML; "" for a run trained without SHAP-Backprop."""
    epochs = [entry for entry in history if entry.get("xnesyl_weight") is not None]
    if not epochs:
        return ""
    weighting = epochs[-1].get("xnesyl_weighting", "exponential")
    intro = markup.paragraph(
        "Regime: train.xnesyl, X-NeSyL SHAP-Backprop (Díaz-Rodríguez et al., Information Fusion "
        "2022). Each batch, exact Shapley values of the parts present in each image (a removed "
        "part is painted with the background colour) explain the class probabilities; a part "
        "the knowledge graph says is not in the sample's class but raises it, or a part of the "
        "class that lowers it, is a misattribution m < 0, and the sample's cross-entropy is "
        f"weighted by {'exp(-h m)' if weighting == 'exponential' else '1 - h m'}. SHAP-GED "
        "counts the edges to add or delete between the graph SHAP induces and the knowledge "
        "graph (lower: better aligned); figures are over the training samples explained."
    )
    last = epochs[-1]
    verdict = markup.paragraph(
        f"Last epoch: SHAP-GED {last['xnesyl_shap_ged']:.2f} (first epoch "
        f"{epochs[0]['xnesyl_shap_ged']:.2f}), {100 * last['xnesyl_misattributed']:.1f}% of the "
        f"explained samples misattributed, mean loss weight {last['xnesyl_weight']:.3f}."
    )
    fig = figures.add(
        "xnesyl_alignment",
        alignment_figure(epochs),
        "SHAP-Backprop: SHAP-GED and misattributed share of the explained training samples",
    )
    rows = [
        (
            e["epoch"],
            e["xnesyl_shap_ged"],
            e["xnesyl_misattributed"],
            e["xnesyl_weight"],
            e.get("val_accuracy"),
        )
        for e in epochs
    ]
    header = ("epoch", "SHAP-GED", "misattributed share", "mean weight", "val accuracy")
    return markup.section(
        "Explanation-guided training: X-NeSyL SHAP-Backprop",
        intro,
        verdict,
        fig,
        markup.table(header, rows),
    )


def alignment_figure(epochs: Sequence[Mapping]) -> Figure:
    """SHAP-GED (left axis) and the misattributed share (right axis) against the epoch."""
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.subplots()
    x = [e["epoch"] for e in epochs]
    ged = [e["xnesyl_shap_ged"] for e in epochs]
    ax.plot(x, ged, "o-", color="C0", label="SHAP-GED")
    ax.set_xlabel("epoch")
    ax.set_ylabel("SHAP-GED (edges)", color="C0")
    ax.set_ylim(0, max(max(ged), 0.1) * 1.15)
    share = ax.twinx()
    misattributed = [e["xnesyl_misattributed"] for e in epochs]
    share.plot(x, misattributed, "s--", color="C1", label="misattributed")
    share.set_ylabel("misattributed share", color="C1")
    share.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
