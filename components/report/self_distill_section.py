"""The report's part for iterative self-distillation (``train.self_distill=iterative``).

``rows`` is the list :func:`components.training.self_distill_rounds.train_rounds` returns (one
per round: ``round``, ``xi``, ``xi_unclipped``, ``val_accuracy``, ``val_loss``, ``epochs``,
``teacher_only_val_accuracy``): a sentence on the regime, a table and a figure of the
ground-truth weight and the validation accuracy per round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from components.report import markup
from components.report.figure_set import FigureSet

_COLUMNS = ("round", "xi", "xi_unclipped", "val_accuracy", "teacher_only_val_accuracy", "epochs")


def self_distill_parts(rows: Sequence[Mapping], figures: FigureSet) -> list[str]:
    """The regime's sentence, per-round table and figure; nothing without rounds."""
    if not rows:
        return []
    intro = markup.paragraph(
        f"Regime: iterative self-distillation with ground-truth targets (Borup & Andersen "
        f"2021), {len(rows) - 1} round(s) after round 0. Round k trains a fresh network "
        "against xi_k * onehot(y) + (1 - xi_k) * softmax(teacher), the teacher being round "
        "k-1's network; xi_k is the paper's estimate from the validation predictions of round "
        "0 and of a teacher-only probe (clipped to [0, 1]). The last round's network is the "
        "run's model."
    )
    table = markup.table(
        ("round", "xi_k", "xi_k unclipped", "val accuracy", "teacher-only probe", "epochs"),
        [tuple(row.get(key) for key in _COLUMNS) for row in rows],
        highlight={len(rows) - 1},  # the run's model
    )
    caption = "Ground-truth weight xi_k and best validation accuracy per self-distillation round"
    return [intro, table, figures.add("self_distill_rounds", rounds_figure(rows), caption)]


def rounds_figure(rows: Sequence[Mapping]) -> Figure | None:
    """Validation accuracy (left axis) and ``xi_k`` (right axis) against the round."""
    points = [row for row in rows if row.get("val_accuracy") is not None]
    if not points:
        return None
    fig = Figure(figsize=(5.5, 3.2))
    ax = fig.add_subplot()
    rounds = [row["round"] for row in points]
    ax.plot(rounds, [row["val_accuracy"] for row in points], "o-", color="#1f77b4")
    ax.set_xlabel("round")
    ax.set_ylabel("val accuracy", color="#1f77b4")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    weight = ax.twinx()
    weight.plot(rounds, [row["xi"] for row in points], "s--", color="#d62728")
    weight.set_ylabel("xi_k (ground-truth weight)", color="#d62728")
    weight.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    return fig
