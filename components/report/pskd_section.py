"""The report's "Self-distillation: PS-KD" section (``train.self_distill=pskd``).

Shown when the training history carries PS-KD's per-epoch ``pskd_alpha`` (as
:func:`components.training.fit.fit` reports it): what ran, and a figure of the weight ``alpha_t``
of the model's own previous predictions in the targets, epoch by epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from components.report import markup
from components.report.figure_set import FigureSet


def pskd_section(history: Sequence[Mapping], figures: FigureSet) -> str:
    """The section's HTML; "" for a run trained without PS-KD."""
    epochs = [entry for entry in history if entry.get("pskd_alpha") is not None]
    if not epochs:
        return ""
    alpha_T = epochs[-1]["pskd_alpha_T"]  # noqa: N806 (the paper's name)
    intro = markup.paragraph(
        "Regime: self_distill=pskd, progressive self-knowledge distillation (Kim et al., ICCV "
        f"2021) with alpha_T = {alpha_T:g}. At epoch t of T the cross-entropy trains against "
        "(1 - alpha_t) * onehot(y) + alpha_t * p_(t-1)(x), where p_(t-1)(x) is the model's own "
        "softmax for that training sample in the previous epoch and alpha_t = alpha_T * t / T; "
        "the first epoch uses the labels alone. Validation losses use the hard labels."
    )
    fig = figures.add(
        "pskd_alpha",
        alpha_figure(epochs),
        "PS-KD: weight alpha_t of the model's own previous predictions in the targets, per epoch",
    )
    rows = [(e["epoch"], e["pskd_alpha"], e.get("train_ce"), e.get("val_accuracy")) for e in epochs]
    table = markup.table(("epoch", "alpha_t", "train CE (soft targets)", "val accuracy"), rows)
    return markup.section("Self-distillation: PS-KD", intro, fig, table)


def alpha_figure(epochs: Sequence[Mapping]) -> Figure:
    """``alpha_t`` against the epoch, with ``alpha_T`` marked."""
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot([e["epoch"] for e in epochs], [e["pskd_alpha"] for e in epochs], "o-")
    alpha_T = epochs[-1]["pskd_alpha_T"]  # noqa: N806
    ax.axhline(alpha_T, color="grey", linestyle="--", label=f"alpha_T = {alpha_T:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("alpha_t")
    ax.set_ylim(0, max(alpha_T, 0.05) * 1.1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="lower right")
    return fig
