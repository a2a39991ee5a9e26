"""The "Predictions" section of a ``sennflow predict`` report: what was predicted, how sure the
model was, the inputs it was least sure of, and the files it could not read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from components.report import markup
from components.report.figure_set import FigureSet
from components.report.figures import class_label

CLASSES_DRAWN = 40  # bars of the most predicted classes; the rest are summed into one


def predict_section(predictions: Mapping | None, class_names: Sequence[str], figures: FigureSet):
    """The section, or "" for a run that predicted nothing (every other flow)."""
    if not predictions:
        return ""
    labelled = predictions.get("labelled", 0)
    scored = (
        f" {labelled} of them name their class (the run's label column, or a folder named "
        "for a class), so the Evaluation section scores them."
        if labelled
        else " None of them names its class, so nothing is scored."
    )
    parts = [
        markup.paragraph(
            f"{predictions['rows']} inputs of {predictions['input']} predicted by the model of "
            f"{predictions['source_run']}; {predictions['file']} holds one row per input: the "
            f"most probable classes and their probabilities{_prototype_note(predictions)}." + scored
        ),
        figures.add(
            "predictions",
            predictions_figure(predictions["counts"], predictions["top_probability"], class_names),
            "Left: inputs per predicted class. Right: how sure the model is, the probability of "
            "the predicted class per input",
        ),
        "<h3>Least confident predictions</h3>",
        markup.table(
            ("row", "input", "predicted", "probability", "runner-up", "its probability"),
            [
                (
                    r["row"],
                    r["input"],
                    r["predicted"],
                    r["probability"],
                    r["runner_up"],
                    r["runner_up_probability"],
                )
                for r in predictions["least_confident"]
            ],
        ),
    ]
    parts += markup.file_list(
        "Skipped files", predictions.get("bad_files") or [], "predictions.json"
    )
    return markup.section("Predictions", *parts)


def _prototype_note(predictions: Mapping) -> str:
    return ", and the prototypes that contributed most" if predictions.get("prototypes") else ""


def predictions_figure(
    counts: Sequence[int], top_probability: Sequence[float], class_names: Sequence[str]
) -> Figure:
    """Inputs per predicted class (most first; beyond :data:`CLASSES_DRAWN` classes the rest
    as one bar) beside the histogram of the predicted class's probability."""
    counts = np.asarray(counts, dtype=np.int64)
    order = np.argsort(-counts, kind="stable")
    shown = order[:CLASSES_DRAWN]
    labels = [class_label(class_names, int(k), 24) for k in shown]
    values = counts[shown].tolist()
    if len(order) > CLASSES_DRAWN:
        labels.append(f"{len(order) - CLASSES_DRAWN} other classes")
        values.append(int(counts[order[CLASSES_DRAWN:]].sum()))
    height = max(2.6, 0.28 * len(labels) + 0.8)
    fig = Figure(figsize=(9.0, height), layout="constrained")
    bars, hist = fig.subplots(1, 2, width_ratios=(1.2, 1))
    positions = np.arange(len(labels))
    bars.barh(positions, values, color="#4c8bc9", edgecolor="#1f4e79")
    bars.set_yticks(positions, labels, fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel("inputs")
    bars.set_title("predicted class")
    for y, value in zip(positions, values, strict=True):
        bars.text(value, y, f" {value}", va="center", fontsize=7)
    hist.hist(top_probability, bins=np.linspace(0, 1, 21), color="#9aa5b1", edgecolor="#5c6670")
    hist.set_xlim(0, 1)
    hist.set_xlabel("probability of the predicted class")
    hist.set_ylabel("inputs")
    hist.set_title("confidence")
    return fig
