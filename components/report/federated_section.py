"""The report's "Federated learning" section: setup, strategies, communication, faults.

Shown when :attr:`components.report.ReportData.federated` is set by the federated flow. Data
contract (keys are strings)::

    {"partition": "iid" | "dirichlet" | "disjoint_classes", "alpha": 0.5 | None,
     "num_clients": 5, "rounds": 10, "fraction": 1.0, "local_epochs": 1,
     "embedding": "<SSL checkpoint folder>" | None,
     "feature_space": "SSL embedding" | "model encoder" | "raw inputs" | None,
     "aggregation": "mean" | "median" | "trimmed_mean" | "krum", "byzantine": 1,
     "clients": [{"client": 0, "samples": 250, "classes": [0, 1]}, ...],
     "strategies": {"<strategy>": {
         "final_accuracy": 0.89, "client_accuracy": {"0": 0.97, ...},
         "rounds": [{"round": 0, "sampled": [...], "participants": [...],
                     "bytes_sent": {"0": 1200, ...}, "bytes_received": {"0": 800, ...},
                     "accuracy": 0.81 | None, "wall_s": 0.12}, ...],
         "events": [{"round": 1, "client": 2, "kind": "dropped" | "rejected" | "skipped",
                     "reason": "..."}, ...]}, ...}}

``bytes_sent`` is what the server sent to each client (server -> client), ``bytes_received`` what
it received from each (client -> server). The "Faults" part is always shown, so a run without
faults says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from components.report import markup
from components.report.data import FederatedSection
from components.report.federated_figures import (
    accuracy_per_round_figure,
    bytes_per_round_figure,
    client_accuracy_figure,
    round_bytes,
)
from components.report.figure_set import FigureSet
from components.report.search_figures import is_number

NO_FAULTS = "No client was dropped or rejected."

_STRATEGIES = {
    "prototypes": "prototype averaging, as in Federated Reconnaissance (Hendryx et al. 2021): "
    "each client sends per-class sums and counts of its embeddings and the server forms each "
    "class prototype as the count-weighted average; no gradient steps",
    "fedavg": "FedAvg (McMahan et al. 2017): each sampled client trains the global model on its "
    "shard for the local epochs and the server averages the weights, weighted by sample count",
    "fedprox": "FedProx (Li et al. 2020): FedAvg with a proximal term mu/2 ||w - w_global||^2 in "
    "each client's loss, which keeps local solutions near the global model on skewed data",
}

_PARTITIONS = {
    "iid": "IID (a uniform random split of equal sizes)",
    "dirichlet": "label skew by a Dirichlet(alpha = {alpha}) prior over clients for each class "
    "(Hsu et al. 2019; smaller alpha gives each client fewer classes)",
    "disjoint_classes": "disjoint classes (each client owns its own set of classes, as in "
    "Federated Reconnaissance)",
}

_SUMMARY_HEADER = (
    "strategy",
    "final accuracy",
    "mean bytes received per round (client → server)",
    "mean bytes sent per round (server → clients)",
    "total bytes",
    "mean wall s per round",
    "dropped",
    "rejected",
)


_AGGREGATIONS = {
    "median": "the coordinate-wise median (Yin et al. 2018)",
    "trimmed_mean": "the coordinate-wise trimmed mean (Yin et al. 2018)",
    "krum": "Krum (Blanchard et al. 2017)",
}


def federated_section(federated: FederatedSection | None, figures: FigureSet) -> str:
    """The "Federated learning" section of ``federated`` (see ``ReportData.federated``).

    Args:
        federated: the federated flow's results, or None.
        figures: where figures are saved and inlined.

    Returns:
        The section's HTML; "" when ``federated`` is None or empty.
    """
    if not federated:
        return ""
    strategies = federated.get("strategies") or {}
    parts = [markup.paragraph(_setup_text(federated))]
    parts += [markup.paragraph(_strategy_text(name)) for name in strategies]
    if strategies:
        parts += ["<h3>Strategies</h3>", summary_table(strategies)]
    if federated.get("clients"):
        parts += ["<h3>Clients</h3>", client_table(federated["clients"])]
    parts += _figure_parts(strategies, figures)
    parts += ["<h3>Faults</h3>", *fault_parts(strategies)]
    return markup.section("Federated learning", *parts)


def _setup_text(federated: Mapping) -> str:
    partition = str(federated.get("partition", "unknown"))
    alpha = federated.get("alpha")
    about = _PARTITIONS.get(partition, partition).format(alpha=markup.format_value(alpha))
    fraction = federated.get("fraction")
    text = (
        f"{markup.format_value(federated.get('num_clients'))} clients, data partition: {about}. "
        f"{markup.format_value(federated.get('rounds'))} rounds; each round the server samples "
        f"ceil({markup.format_value(fraction)} x clients) of them, sends each the global state, "
        "validates their updates and merges the valid ones."
    )
    if federated.get("local_epochs") is not None:
        text += f" Gradient-based strategies train {federated['local_epochs']} local epoch(s)."
    aggregation = federated.get("aggregation")
    if aggregation and aggregation != "mean":
        text += (
            f" FedAvg/FedProx merge client weights by {_AGGREGATIONS.get(aggregation, aggregation)}"
            f", robust to {markup.format_value(federated.get('byzantine'))} attacking client(s)."
        )
    if "prototypes" in (federated.get("strategies") or {}):
        text += _prototype_space_text(federated)
    return text


def _prototype_space_text(federated: Mapping) -> str:
    """Where the prototypes live, as recorded (``feature_space``; older runs lack it)."""
    embedding, space = federated.get("embedding"), federated.get("feature_space")
    if embedding:
        return f" Prototype averaging embeds with the pre-trained SSL encoder {embedding}."
    if space == "raw inputs":
        return (
            " Prototypes live in the raw (standardised) input space: the model has no encoder."
            " Set federated.embedding to an SSL encoder checkpoint to average in its space."
        )
    if space == "model encoder":
        return " Prototypes live in the untrained model encoder's space (no federated.embedding)."
    return (
        " Prototype averaging embeds with the untrained model's encoder, or the"
        " standardised input where the model has none (no federated.embedding)."
    )


def _strategy_text(name: str) -> str:
    about = _STRATEGIES.get(str(name).lower())
    return f"{name}: {about}." if about else f"{name}: no description."


def _event_counts(result: Mapping) -> Counter:
    return Counter(str(e.get("kind")) for e in result.get("events") or [])


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _mean_bytes(values: Sequence[int]) -> int | None:
    return round(sum(values) / len(values)) if values else None


def summary_table(strategies: Mapping[str, Mapping]) -> str:
    """One row per strategy: accuracy, communication, time and faults; best accuracy highlighted.

    Bytes per round are summed over the round's clients, then averaged over the rounds.
    """
    rows = []
    for name, result in strategies.items():
        rounds = result.get("rounds") or []
        sent, received = zip(*map(round_bytes, rounds), strict=True) if rounds else ((), ())
        walls = [r["wall_s"] for r in rounds if is_number(r.get("wall_s"))]
        counts = _event_counts(result)
        rows.append(
            [
                name,
                result.get("final_accuracy"),
                _mean_bytes(received),
                _mean_bytes(sent),
                sum(sent) + sum(received) if rounds else None,
                _mean(walls),
                counts["dropped"],
                counts["rejected"],
            ]
        )
    accuracies = [row[1] for row in rows if is_number(row[1])]
    best = {i for i, row in enumerate(rows) if accuracies and row[1] == max(accuracies)}
    return markup.table(_SUMMARY_HEADER, rows, highlight=best if len(rows) > 1 else ())


def client_table(clients: Sequence[Mapping]) -> str:
    """One row per client: its number of training samples and its classes."""
    rows = [(c.get("client"), c.get("samples"), list(c.get("classes") or [])) for c in clients]
    return markup.table(("client", "samples", "classes"), rows)


def fault_parts(strategies: Mapping[str, Mapping]) -> list[str]:
    """A count line and a table of every dropped, rejected or skipped client update, in run
    order; the single line :data:`NO_FAULTS` when there is none."""
    rows = [
        (name, e.get("round"), e.get("client"), e.get("kind"), e.get("reason") or "")
        for name, result in strategies.items()
        for e in result.get("events") or []
    ]
    if not rows:
        return [markup.paragraph(NO_FAULTS)]
    counts = Counter(str(kind) for *_, kind, _ in rows)
    listed = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return [
        markup.paragraph(f"{len(rows)} client update(s) did not reach the merge: {listed}."),
        markup.table(("strategy", "round", "client", "kind", "reason"), rows),
    ]


def _figure_parts(strategies: Mapping[str, Mapping], figures: FigureSet) -> list[str]:
    return [
        figures.add(
            "federated_accuracy",
            accuracy_per_round_figure(strategies),
            "Global test accuracy after each round, one line per strategy",
        ),
        figures.add(
            "federated_bytes",
            bytes_per_round_figure(strategies),
            "Bytes per round (server → clients plus clients → server, summed over the clients), "
            "log scale",
        ),
        figures.add(
            "federated_client_accuracy",
            client_accuracy_figure(strategies),
            "Accuracy of the final global model on the test samples of each client's classes",
        ),
    ]
