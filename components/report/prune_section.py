"""The report's "Lottery tickets" section: what pruning ran, accuracy vs remaining weights for
the winning tickets and their re-initialised controls, and each round's early-stopping epoch.

Shown when :attr:`components.report.ReportData.prune` is set by the prune flow. Data contract::

    {"model": "mlp", "config": {PruneConfig fields},
     "rounds": [{"round": 0, "remaining": 1.0, "layers": {"net.1.weight": 1.0, ...},
                 "ticket": {"test_accuracy": 0.97, "best_epoch": 12, "epochs_run": 17},
                 "control": None | {same keys}}, ...]}
"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from components.report import markup
from components.report.figure_set import FigureSet

_HEADER = (
    "round",
    "weights remaining",
    "ticket test accuracy",
    "ticket best epoch",
    "re-initialised test accuracy",
    "re-initialised best epoch",
)


def prune_section(prune: Mapping | None, figures: FigureSet) -> str:
    """The "Lottery tickets" section of ``prune`` (see ``ReportData.prune``); "" without one."""
    if not prune:
        return ""
    rounds = prune["rounds"]
    return markup.section(
        "Lottery tickets",
        markup.paragraph(_setup_text(prune["model"], prune["config"])),
        figures.add(
            "lottery_accuracy",
            _curve_figure(rounds, "test_accuracy", "test accuracy"),
            "Test accuracy against the share of prunable weights remaining (log scale): winning "
            "tickets (rewound weights) and the same masks from a fresh random initialisation.",
        ),
        figures.add(
            "lottery_best_epoch",
            _curve_figure(rounds, "best_epoch", "early-stopping epoch (lowest val loss)"),
            "The epoch of lowest validation loss in each round: the paper's early-stopping "
            "iteration, a measure of how fast a ticket learns.",
        ),
        markup.table(_HEADER, [_row(record) for record in rounds]),
    )


def _setup_text(model: str, config: Mapping) -> str:
    rewind = (
        "reset to their initial weights"
        if config["rewind_epoch"] == 0
        else f"rewound to their weights after epoch {config['rewind_epoch']} of the dense round"
    )
    if config["scope"] == "global":
        rates = f"{config['rate']:.0%} of the remaining weights of all layers together"
    else:
        output = config["output_rate"] if config["output_rate"] is not None else config["rate"] / 2
        rates = (
            f"{config['rate']:.0%} of each fully connected layer's remaining weights, "
            f"{config['conv_rate']:.0%} of each convolution's and {output:.0%} of the output "
            "layer's"
        )
    control = (
        " Each round also trains the same masks from a fresh random initialisation (the control)."
        if config["control"]
        else ""
    )
    return (
        f"Iterative magnitude pruning of {model} (Frankle & Carbin 2019): {config['rounds']} "
        f"rounds after the dense one, each pruning the smallest {rates}; the survivors are "
        f"{rewind} and retrained with the mask held fixed.{control}"
    )


def _row(record: Mapping) -> list:
    ticket, control = record["ticket"], record["control"] or {}
    return [
        record["round"],
        f"{record['remaining']:.1%}",
        ticket["test_accuracy"],
        ticket["best_epoch"],
        control.get("test_accuracy", "—"),
        control.get("best_epoch", "—"),
    ]


def _curve_figure(rounds, key: str, ylabel: str) -> Figure:
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = [100 * record["remaining"] for record in rounds]
    ax.plot(x, [r["ticket"][key] for r in rounds], "o-", label="winning ticket")
    controls = [(100 * r["remaining"], r["control"][key]) for r in rounds if r["control"]]
    if controls:
        ax.plot(*zip(*controls, strict=True), "s--", label="re-initialised")
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{value:.3g}" for value in x])  # the rounds' own sparsities
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
