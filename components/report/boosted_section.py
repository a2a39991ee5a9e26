"""The report's "Gradient-boosted final layer" section (``train.final_layer=boosted``).

Shown when the training history holds boosting steps (entries with ``stage == "boost"``, as
:func:`components.training.boosted.boosted_fit` reports them): what ran, and the ensemble's loss
and accuracy after each step against the hidden units added so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from components.report import markup
from components.report.figure_set import FigureSet

BOOST_STAGE = "boost"

_HEADER = (
    "step",
    "hidden units",
    "rho (step length)",
    "residual MSE",
    "train CE",
    "val CE",
    "val accuracy",
)


def boost_steps(history: Sequence[Mapping]) -> list[Mapping]:
    """The history's boosting steps, in order."""
    return [entry for entry in history if entry.get("stage") == BOOST_STAGE]


def boosted_section(history: Sequence[Mapping], figures: FigureSet) -> str:
    """The section's HTML; "" for a run trained with the standard final layer."""
    steps = boost_steps(history)
    if not steps:
        return ""
    last = steps[-1]
    trunk_epochs = len(history) - len(steps)
    trunk = (
        f"The trunk trained first for {trunk_epochs} epoch(s) with an ordinary last layer, which "
        "was then re-initialised; "
        if trunk_epochs
        else "The trunk has no weights (the last hidden layer reads the input); "
    )
    intro = markup.paragraph(
        "Regime: gradient-boosted final layer (Emami & Martínez-Muñoz, Sequential Training of "
        f"Neural Networks with Gradient Boosting). {trunk}the output bias started at the log "
        f"class priors, then {last['boost_steps']} steps each fitted "
        f"{last['boost_units'] // last['boost_steps']} new hidden units to the ensemble's "
        "pseudo-residuals (one-hot label minus softmax) and added them with a Newton step "
        f"length. The final network has {last['boost_units']} hidden units."
    )
    fig = figures.add(
        "boosting_steps",
        boosting_curves_figure(steps),
        "Ensemble cross-entropy and accuracy after each boosting step, against the hidden "
        "units added so far",
    )
    rows = [
        (
            s["boost_step"],
            s["boost_units"],
            s["boost_rho"],
            s["boost_residual_mse"],
            s["train_loss"],
            s["val_loss"],
            s.get("val_accuracy"),
        )
        for s in steps
    ]
    return markup.section("Gradient-boosted final layer", intro, fig, markup.table(_HEADER, rows))


def boosting_curves_figure(steps: Sequence[Mapping]) -> Figure:
    """Train/val cross-entropy and train/val accuracy against hidden units added."""
    units = [s["boost_units"] for s in steps]
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        loss_ax.plot(units, [s[key] for s in steps], marker="o", label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        if all(s.get(key) is not None for s in steps):
            acc_ax.plot(units, [s[key] for s in steps], marker="o", label=label)
    loss_ax.set(xlabel="hidden units added", ylabel="cross-entropy")
    acc_ax.set(xlabel="hidden units added", ylabel="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig
