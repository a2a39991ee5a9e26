"""The report's "Continual learning" section: scenario, metric table, accuracy matrices.

Shown when :attr:`components.report.ReportData.continual` is set by the continual flow. Data
contract (keys are strings)::

    {"dataset": "digits", "num_tasks": 5, "tasks": [[3, 7], [0, 9], ...],
     "schedule": {"max_lr": 0.1, ...} | None,
     "methods": {"<method>": {"R": [[...]], "summary": {...}, "wall_s": 3.2,
                              "lrs": [...] | None}, ...},
     "federated": None | {"num_clients": 3, "method": "ncm", "R_merged": [[...]],
                          "R_clients": {"0": [[...]], ...}, "summary_merged": {...},
                          "bytes_per_merge": [...]}}

``summary`` holds :func:`components.continual.metrics.summary`'s keys. Every part except the
scenario paragraph and the metric definitions is left out when its data is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from components.continual.metrics import summary as summarise
from components.report import markup
from components.report.continual_figures import (
    accuracy_matrices_figure,
    as_matrix,
    learning_rate_figure,
)
from components.report.data import ContinualSection
from components.report.figure_set import FigureSet
from components.report.search_figures import is_number

# (summary key, column header, higher is better)
_METRICS = (
    ("average_accuracy", "average accuracy", True),
    ("average_incremental_accuracy", "average incremental accuracy", True),
    ("backward_transfer", "backward transfer", True),
    ("forward_transfer", "forward transfer", True),
    ("forgetting", "forgetting", False),
)

_DEFINITIONS = (
    ("average accuracy", "mean of the last row of R: accuracy on every task after the last one"),
    (
        "average incremental accuracy",
        "mean over i of the mean of R[i, :i+1]: accuracy on the tasks seen so far, averaged over "
        "the steps (Rebuffi et al. 2017, iCaRL)",
    ),
    (
        "backward transfer",
        "mean over j < T of R[T, j] - R[j, j]; negative means forgetting (Lopez-Paz & Ranzato "
        "2017, GEM)",
    ),
    (
        "forward transfer",
        "mean over j > 0 of R[j-1, j] - b_j, where b_j is a random-init model's accuracy on "
        "task j (Lopez-Paz & Ranzato 2017); n/a when b was not measured. In class-incremental "
        "learning R[j-1, j] is 0 (an unseen class is never predicted), so it is -mean(b_j) for "
        "every method and does not rank them",
    ),
    (
        "forgetting",
        "max-based (Chaudhry et al. 2018, RWalk): mean over j < T of max_{i<T} R[i, j] - R[T, j]; "
        "lower is better",
    ),
)


def continual_section(continual: ContinualSection | None, figures: FigureSet) -> str:
    """The "Continual learning" section of ``continual`` (see ``ReportData.continual``).

    Args:
        continual: the continual flow's results, or None.
        figures: where figures are saved and inlined.

    Returns:
        The section's HTML; "" when ``continual`` is None or empty.
    """
    if not continual:
        return ""
    methods = continual.get("methods") or {}
    tasks = continual.get("tasks")
    parts = [*_scenario_parts(continual), *_method_parts(methods, tasks, figures)]
    parts += _schedule_parts(continual.get("schedule"), methods, figures)
    if continual.get("federated"):
        parts += _federated_parts(continual["federated"], tasks, figures)
    return markup.section("Continual learning", *parts)


def _scenario_parts(continual: Mapping) -> list[str]:
    tasks = continual.get("tasks") or []
    num_tasks = continual.get("num_tasks", len(tasks))
    listed = "; ".join(f"task {j}: {markup.format_value(list(c))}" for j, c in enumerate(tasks))
    text = (
        f"Class-incremental learning on {continual.get('dataset', 'an unnamed dataset')}: "
        f"{num_tasks} tasks learned one after the other"
        + (f" ({listed})" if listed else "")
        + ". A single head classifies among all classes seen so far, and no task id is given "
        "at test time. R[i, j] is the accuracy on the test set of task j after training on "
        "tasks 0..i; T is the last task."
    )
    return [markup.paragraph(text), markup.table(("metric", "definition"), _DEFINITIONS)]


def _method_parts(methods: Mapping, tasks, figures: FigureSet) -> list[str]:
    if not methods:
        return [markup.paragraph("No continual-learning method was run.", "note")]
    caption = (
        "Accuracy matrix R per method: row i is the model after training task i, column j the "
        "test accuracy on task j (its classes in brackets); same colour scale 0..1 for all "
        "panels, blank cells were not measured."
    )
    matrices = {name: result.get("R") for name, result in methods.items()}
    return [
        "<h3>Metrics per method</h3>",
        metric_table(methods),
        figures.add(
            "continual_accuracy_matrix", accuracy_matrices_figure(matrices, tasks), caption
        ),
    ]


def metric_table(methods: Mapping[str, Mapping]) -> str:
    """One row per method: each metric of its ``summary`` and its wall time.

    The best value of each column (highest, lowest for forgetting and wall time) is marked
    ``(best)``; the row of the best average accuracy is highlighted.
    """
    names = list(methods)
    columns = [(key, higher) for key, _, higher in _METRICS] + [("wall_s", False)]
    values = {key: [_metric(methods[n], key) for n in names] for key, _ in columns}
    best = {key: _best(values[key], higher) for key, higher in columns}
    rows = [
        [name, *(_marked(values[key][i], i in best[key]) for key, _ in columns)]
        for i, name in enumerate(names)
    ]
    header = ("method", *(title for _, title, _ in _METRICS), "wall s")
    return markup.table(header, rows, highlight=best["average_accuracy"])


def _metric(result: Mapping, key: str) -> float | None:
    value = result.get(key) if key == "wall_s" else (result.get("summary") or {}).get(key)
    return float(value) if is_number(value) else None


def _best(values: Sequence[float | None], higher: bool) -> set[int]:
    """Indices of the best value (all of them on a tie); none for a table of one row."""
    scored = [v for v in values if v is not None]
    if len(values) < 2 or not scored:
        return set()
    target = max(scored) if higher else min(scored)
    return {i for i, v in enumerate(values) if v is not None and v == target}


def _marked(value: float | None, best: bool) -> float | str | None:
    return f"{markup.format_value(value)} (best)" if best else value


def _schedule_parts(schedule: Mapping | None, methods: Mapping, figures: FigureSet) -> list[str]:
    lrs = {name: result.get("lrs") for name, result in methods.items()}
    fig = learning_rate_figure(lrs)
    if not schedule and fig is None:
        return []
    parts = ["<h3>Learning-rate schedule</h3>"]
    if schedule:
        parts.append(markup.key_value_table(schedule, ("setting", "value")))
    caption = "Learning rate per optimizer step over the whole task stream, one line per method"
    return [*parts, figures.add("continual_lr", fig, caption)]


def _federated_parts(federated: Mapping, tasks, figures: FigureSet) -> list[str]:
    clients = federated.get("R_clients") or {}
    merges = [b for b in federated.get("bytes_per_merge") or [] if is_number(b)]
    text = (
        f"{federated.get('num_clients', len(clients))} clients each learn their own stream with "
        f"{federated.get('method', 'an unnamed method')}; the server merges their class "
        "prototypes (count-weighted sums) into one model, whose R covers the union of the "
        "clients' stream steps."
    )
    embedding = federated.get("embedding")
    text += (
        f" The shared embedding is the pre-trained SSL encoder {embedding}."
        if embedding
        else " The shared embedding is the learners' seeded, untrained one."
    )
    if merges:
        text += (
            f" {len(merges)} merges, {sum(merges) / len(merges):.0f} bytes per merge on "
            f"average, {sum(merges):.0f} bytes in all."
        )
    matrices = {"merged": federated.get("R_merged")}
    matrices |= {f"client {c}": R for c, R in clients.items()}
    caption = (
        "Accuracy matrix R of the merged model and of each client's own model before merging "
        "(same colour scale 0..1, blank cells not measured)"
    )
    return [
        "<h3>Federated continual learning</h3>",
        markup.paragraph(text),
        _federated_table(federated, clients),
        figures.add(
            "continual_federated_matrix", accuracy_matrices_figure(matrices, tasks), caption
        ),
    ]


def _federated_table(federated: Mapping, clients: Mapping) -> str:
    """The merged model's summary against each client's, computed from the client's R."""
    rows = [("merged", federated.get("summary_merged") or {})]
    rows += [(f"client {c}", _summary_of(R)) for c, R in clients.items()]
    header = ("model", *(title for _, title, _ in _METRICS))
    return markup.table(
        header, [(name, *(s.get(key) for key, _, _ in _METRICS)) for name, s in rows]
    )


def _summary_of(R) -> dict:
    """:func:`components.continual.metrics.summary` of ``R``; empty (all n/a) when ``R`` is not
    square or a cell the metrics read (on or below the diagonal) was not measured.

    Unmeasured cells above the diagonal (tasks not yet trained) are read as 0: forward transfer
    is not computed here (no random-init baseline), and forgetting's max over earlier rows
    already holds the diagonal ``R[j, j] >= 0``, so a 0 there changes nothing.
    """
    matrix = as_matrix(R)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        return {}
    future = np.triu(np.ones(matrix.shape, dtype=bool), k=1)
    matrix[future & np.isnan(matrix)] = 0.0
    try:
        return summarise(matrix)
    except ValueError:
        return {}
