"""The ``sae`` trust check's report section (:mod:`components.explain.checks.sae`): the frontier
table and plot (L0 vs loss recovered, SAE beside transcoder), top-activating input galleries of
the top features and neurons, part purity against neurons, and the transcoder circuit weights."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from components.report import markup
from components.report.figure_set import FigureSet

_NAMES = {"neurons": "neurons", "sae": "SAE features", "transcoder": "transcoder features"}


def section(result: Mapping, figures: FigureSet) -> str:
    """The HTML of one ``sae`` result; just the verdict's reason when it did not apply."""
    if "frontier" not in result:
        return ""
    parts = [
        markup.paragraph(
            f"Layer {result['layer']} ({result['width']} neurons"
            + (", per-location features" if result["spatial"] else "")
            + f"), dictionaries {result['expansion']}x wider. Test loss {result['clean_loss']:.3f};"
            f" with the layer zero-ablated {result['ablated_loss']:.3f}."
        ),
        markup.table(
            ("kind", "l1", "L0", "features", "dead", "variance explained", "loss recovered"),
            [
                (
                    r["kind"],
                    r["l1"],
                    f"{r['l0']:.2f}",
                    r["features"],
                    f"{r['dead_fraction']:.0%}",
                    f"{r['variance_explained']:.3f}",
                    f"{r['recovered']:.1%}",
                )
                for r in result["frontier"]
            ],
        ),
        figures.add(
            "sae_frontier",
            _frontier_figure(result["frontier"]),
            "Sparsity against faithfulness: L0 (active features per row) and the fraction of the "
            "loss recovered when the dictionary replaces the layer (1: as good as the model, 0: "
            "as bad as zero-ablating the layer), one point per l1.",
        ),
    ]
    for name, entry in result.get("gallery", {}).items():
        parts.append(
            figures.add(
                f"sae_gallery_{name}",
                _gallery_figure(entry),
                f"Top {_NAMES[name]} (largest mean activation on test rows): each row shows the "
                "test inputs it fires on most.",
            )
        )
    if result.get("localisation"):
        parts.append(_purity_part(result["localisation"], figures))
    if result.get("circuit"):
        parts.append(_circuit_part(result["circuit"], figures))
    return "".join(parts)


def _frontier_figure(frontier) -> Figure:
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    for kind in sorted({r["kind"] for r in frontier}):
        rows = [r for r in frontier if r["kind"] == kind]
        ax.plot([r["l0"] for r in rows], [r["recovered"] for r in rows], "o-", label=kind)
        for r in rows:
            ax.annotate(f"l1={r['l1']:g}", (r["l0"], r["recovered"]), fontsize=7)
    ax.set_xlabel("L0 (active features per row)")
    ax.set_ylabel("fraction of loss recovered")
    ax.legend()
    fig.tight_layout()
    return fig


def _gallery_figure(entry: Mapping) -> Figure | None:
    inputs = np.asarray(entry["inputs"])
    if inputs.size == 0:
        return None
    rows, cols = inputs.shape[:2]
    fig = Figure(figsize=(1.2 * cols + 0.8, 1.2 * rows))
    for i in range(rows):
        for j in range(cols):
            ax = fig.add_subplot(rows, cols, i * cols + j + 1)
            ax.imshow(_displayable(inputs[i, j]), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"#{entry['features'][i]}", fontsize=8)
    fig.tight_layout()
    return fig


def _displayable(sample: np.ndarray) -> np.ndarray:
    """An image (H, W[, 3]) from one sample: RGB / grey images, a square vector, else a strip."""
    if sample.ndim == 3:
        image = sample.transpose(1, 2, 0) if sample.shape[0] == 3 else sample[0]
    elif sample.ndim == 2:
        image = sample
    else:
        side = int(round(np.sqrt(sample.size)))
        image = sample.reshape(side, side) if side * side == sample.size else sample[None]
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else image * 0


def _purity_part(localisation: Mapping, figures: FigureSet) -> str:
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.add_subplot()
    for name, entry in localisation.items():
        values = np.asarray(entry["values"], float)
        values = values[~np.isnan(values)]
        ax.hist(values, bins=20, range=(0, 1), alpha=0.5, label=f"{_NAMES[name]} ({values.size})")
    ax.set_xlabel("part purity (largest share of activation on one part)")
    ax.set_ylabel("units")
    ax.legend()
    fig.tight_layout()
    means = ", ".join(f"{_NAMES[k]} {v['mean']:.3f}" for k, v in localisation.items())
    return figures.add(
        "sae_purity",
        fig,
        "Monosemanticity on the part masks: for each unit, the largest share of its activation "
        f"maps' mass that falls on one part (1: it fires on one part only). Means: {means}.",
    )


def _circuit_part(circuit: Mapping, figures: FigureSet) -> str:
    weights = np.asarray(circuit["weights"], float)
    fig = Figure(figsize=(1.0 + 0.6 * weights.shape[1], 1.0 + 0.45 * weights.shape[0]))
    ax = fig.add_subplot()
    bound = float(np.abs(weights).max()) or 1.0
    image = ax.imshow(weights, cmap="coolwarm", vmin=-bound, vmax=bound)
    ax.set_yticks(range(len(circuit["features"])), [f"#{f}" for f in circuit["features"]])
    ax.set_xticks(range(len(circuit["units"])), circuit["units"], rotation=60, fontsize=7)
    ax.set_ylabel("transcoder feature")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return figures.add(
        "sae_circuit",
        fig,
        "Weights-based circuit (Dunefsky et al. 2024): the input-invariant weight "
        "dec_i . enc_j from each top transcoder feature i to each unit j of "
        f"{circuit['later']}; unit j's pre-activation gains feature i's activation times it.",
    )
