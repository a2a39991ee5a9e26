"""The report's "Model" section: the trained model as a neural circuit diagram.

Shows the diagram :func:`components.report.circuit.trace_circuit` traced from the run's own
model (drawn by :func:`components.report.circuit_figure.circuit_figure`) and, folded away, its
boxes as a table: operation, recorded input and output shapes, parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

from components.report import markup
from components.report.circuit_figure import circuit_figure, shape_label
from components.report.figure_set import FigureSet

CAPTION = (
    "Neural circuit diagram (Abbott, TMLR 2024) traced from the trained model's own modules on "
    "an example batch of N inputs: data flows left to right, each wire is drawn as one line per "
    "tensor axis with the shape it carried, boxes are operations (bold: learned, with their "
    "weights entering from above)."
)


def circuit_section(circuit: Mapping | None, figures: FigureSet) -> str:
    """The section's HTML; "" when the run has no diagram (no single trained model)."""
    if not circuit:
        return ""
    boxes = [b for b in circuit["boxes"] if b["kind"] not in ("input", "output")]
    total = sum(b["params"] for b in boxes)
    intro = (
        f"{circuit['model']}: {len(boxes)} boxes, {total:,} parameters on the path to the "
        f"logits ({circuit['num_classes']} classes)."
    )
    if circuit.get("prototypes"):
        protos = "×".join(map(str, circuit["prototypes"]))
        intro += (
            f" The prototype layer compares the latent tensor with the prototypes ({protos}); "
            "the last layer turns the similarities into class logits."
        )
    figure = figures.add("circuit", circuit_figure(circuit), CAPTION)
    return markup.section("Model", markup.paragraph(intro), figure, _box_table(circuit, boxes))


def _box_table(circuit: Mapping, boxes: list[Mapping]) -> str:
    batch = circuit["batch"]
    rows = [
        (
            b["name"],
            b["operation"],
            ", ".join(shape_label(s, batch) for s in b["inputs"]),
            ", ".join(shape_label(s, batch) for s in b["outputs"]),
            ", ".join(f"{w['name']} {'×'.join(map(str, w['shape']))}" for w in b["weights"]),
            b["params"],
        )
        for b in boxes
    ]
    header = ("box", "operation", "input", "output", "weights", "parameters")
    table = markup.table(header, rows)
    return f"<details><summary>The boxes ({len(boxes)})</summary>{table}</details>"
