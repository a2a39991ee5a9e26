"""The report's "Dynamic channel pruning (FTWT)" section: FLOPs per input and accuracy.

Shown when :attr:`components.report.ReportData.ftwt` holds the section that
:func:`components.pruning.ftwt_stage.run_ftwt` returns: ``mass``, ``epochs``,
``finetune_epochs``, ``macs`` (``dense``, ``predicted``, ``measured``, ``predictor``),
``reduction`` (``predicted``, ``measured``), ``accuracy`` (``dense``,
``gated_before_finetune``, ``gated``), ``layers`` (per gated layer: ``layer``, ``filters``,
``kept_predicted``, ``kept_measured``, ``mask_accuracy``, ``static_accuracy``) and
``measured_macs_per_input``.
"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from components.report import markup
from components.report.figure_set import FigureSet

_ABOUT = (
    "Fire Together Wire Together (Elkerdawy et al. 2022): after training, a mask predictor per "
    "conv layer reads the layer's input and predicts which filters are in the input's top-k "
    "(the fewest filters holding a fraction {mass} of the layer's heatmap mass); at inference "
    "only those filters' outputs are kept. Predictors trained {epochs} epochs with the backbone "
    "frozen, then the backbone fine-tuned {finetune_epochs} epochs under the predicted masks. "
    "FLOPs are multiply-accumulates of the gated conv layers per input: predicted before the "
    "predictors were trained (the network gated by its own top-k masks on the training split), "
    "measured with the predicted masks on the test split (predictors' own MACs included)."
)


def ftwt_section(ftwt: Mapping | None, figures: FigureSet) -> str:
    """The section's HTML ("" when the run used no dynamic pruning)."""
    if not ftwt:
        return ""
    macs, reduction, accuracy = ftwt["macs"], ftwt["reduction"], ftwt["accuracy"]
    summary = {
        "conv MACs per input, dense": macs["dense"],
        "predicted before training (top-k masks)": macs["predicted"],
        "measured (predicted masks + predictors)": macs["measured"],
        "FLOPs reduction predicted": reduction["predicted"],
        "FLOPs reduction measured": reduction["measured"],
        "test accuracy without gating": accuracy["dense"],
        "test accuracy gated, before fine-tuning": accuracy["gated_before_finetune"],
        "test accuracy gated": accuracy["gated"],
    }
    rows = [
        [
            row["layer"],
            row["filters"],
            row["kept_predicted"],
            row["kept_measured"],
            row["mask_accuracy"],
            row["static_accuracy"],
        ]
        for row in ftwt["layers"]
    ]
    header = (
        "layer",
        "filters",
        "kept (predicted)",
        "kept (measured)",
        "mask accuracy",
        "best static mask accuracy",
    )
    return markup.section(
        "Dynamic channel pruning (FTWT)",
        markup.paragraph(_ABOUT.format(**ftwt)),
        markup.key_value_table(summary, ("quantity", "value")),
        markup.table(header, rows),
        figures.add(
            "ftwt_flops",
            flops_figure(ftwt),
            "Left: conv MACs per test input with the predicted masks, beside the dense count and "
            "the count predicted before training. Right: fraction of each layer's filters kept.",
        ),
    )


def flops_figure(ftwt: Mapping) -> Figure:
    """Histogram of measured MACs per input with the dense and predicted counts; kept filters
    per layer, predicted vs measured."""
    fig = Figure(figsize=(10, 3.6))
    hist, bars = fig.subplots(1, 2)
    macs = ftwt["macs"]
    hist.hist(ftwt["measured_macs_per_input"], bins=30, color="tab:blue", alpha=0.8)
    hist.axvline(macs["dense"], color="black", linestyle="--", label="dense")
    hist.axvline(macs["predicted"], color="tab:orange", label="predicted (before training)")
    hist.axvline(macs["measured"], color="tab:blue", linestyle=":", label="measured mean")
    hist.set_xlabel("conv MACs per input")
    hist.set_ylabel("test inputs")
    hist.legend(fontsize=7)
    layers = ftwt["layers"]
    positions = range(len(layers))
    bars.bar(
        [p - 0.2 for p in positions],
        [r["kept_predicted"] for r in layers],
        0.4,
        label="predicted (top-k)",
        color="tab:orange",
    )
    bars.bar(
        [p + 0.2 for p in positions],
        [r["kept_measured"] for r in layers],
        0.4,
        label="measured (predicted masks)",
        color="tab:blue",
    )
    bars.set_xticks(list(positions), [r["layer"] for r in layers], fontsize=7)
    bars.set_ylabel("fraction of filters kept")
    bars.set_ylim(0, 1.05)
    bars.legend(fontsize=7)
    fig.tight_layout()
    return fig
