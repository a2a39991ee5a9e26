"""Figures of a federated run: accuracy and bytes per round, accuracy per client.

``strategies`` is ``federated["strategies"]`` of :class:`components.report.ReportData`: strategy
name -> ``{"final_accuracy", "client_accuracy", "rounds", "events"}``, in run order. Every
figure draws one line or bar per strategy, in the same colour across figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from components.report.search_figures import is_number

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def colour(index: int) -> str:
    """The colour of the ``index``-th strategy."""
    return _COLOURS[index % len(_COLOURS)]


def round_bytes(record: Mapping) -> tuple[int, int]:
    """(server -> clients, clients -> server) bytes of one round, summed over its clients."""
    sent = sum(v for v in (record.get("bytes_sent") or {}).values() if is_number(v))
    received = sum(v for v in (record.get("bytes_received") or {}).values() if is_number(v))
    return sent, received


def _round_series(rounds: Sequence[Mapping], value) -> tuple[list[float], list[float]]:
    """(round numbers, values) of the rounds where ``value(record)`` is a number."""
    xs, ys = [], []
    for position, record in enumerate(rounds):
        y = value(record)
        if is_number(y):
            xs.append(float(record.get("round", position)))
            ys.append(float(y))
    return xs, ys


def _lines_figure(strategies: Mapping[str, Mapping], value, ylabel: str, log: bool):
    series = {
        name: _round_series(result.get("rounds") or [], value)
        for name, result in strategies.items()
    }
    if not any(ys for _, ys in series.values()):
        return None
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    for index, (name, (xs, ys)) in enumerate(series.items()):
        if ys:
            ax.plot(xs, ys, marker="o", markersize=3, color=colour(index), label=name)
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both" if log else "major")
    ax.legend(fontsize=8)
    return fig


def accuracy_per_round_figure(strategies: Mapping[str, Mapping]) -> Figure | None:
    """Global test accuracy after each round, one line per strategy; None without data."""
    return _lines_figure(strategies, lambda r: r.get("accuracy"), "global test accuracy", False)


def bytes_per_round_figure(strategies: Mapping[str, Mapping]) -> Figure | None:
    """Bytes sent plus received per round, one line per strategy, log y; None without data.

    The log axis keeps strategies whose messages differ by orders of magnitude (prototype sums
    vs full model weights) readable on one plot; rounds with no bytes are left out.
    """

    def total(record: Mapping) -> float | None:
        value = sum(round_bytes(record))
        return value if value > 0 else None

    return _lines_figure(strategies, total, "bytes per round (sent + received)", True)


def client_accuracy_figure(strategies: Mapping[str, Mapping]) -> Figure | None:
    """The final global model's accuracy on each client's classes, grouped bars per client.

    Returns:
        The figure, or None when no strategy reports a client accuracy.
    """
    clients = sorted(
        {str(c) for r in strategies.values() for c in (r.get("client_accuracy") or {})},
        key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c),
    )
    if not clients:
        return None
    width = 0.8 / len(strategies)
    fig = Figure(figsize=(max(4.5, 1.0 + 0.9 * len(clients)), 3.6), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(clients), dtype=float)
    for index, (name, result) in enumerate(strategies.items()):
        accuracy = {str(c): v for c, v in (result.get("client_accuracy") or {}).items()}
        heights = [accuracy.get(c) for c in clients]
        drawn = [i for i, h in enumerate(heights) if is_number(h)]
        offset = (index - (len(strategies) - 1) / 2) * width
        ax.bar(
            positions[drawn] + offset,
            [heights[i] for i in drawn],
            width=width,
            color=colour(index),
            label=name,
        )
    ax.set_xticks(positions, clients)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("client")
    ax.set_ylabel("accuracy on the client's classes")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig
