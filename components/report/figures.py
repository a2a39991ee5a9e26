"""Figures of training and evaluation: learning curves, confusion matrix, reliability diagram.

Built on :class:`matplotlib.figure.Figure` directly (no pyplot), so they are safe to draw from
worker threads and leave no global figure state behind.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

_DPI = 110
_SPLIT_KEYS = {"train_loss", "val_loss", "train_accuracy", "val_accuracy"}


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def class_label(class_names: Sequence[str], index: int | None) -> str:
    """The name of class ``index``, or the index itself when no name is known."""
    if index is None:
        return "?"
    return str(class_names[index]) if 0 <= index < len(class_names) else str(index)


def series(history: Sequence[Mapping], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key`` over the epochs that report it."""
    epochs, values = [], []
    for row, record in enumerate(history):
        if record.get(key) is not None:
            epochs.append(float(record.get("epoch", row + 1)))
            values.append(float(record[key]))
    return epochs, values


def _plot_keys(ax, history: Sequence[Mapping], keys: Sequence[str], ylabel: str) -> bool:
    """Plot each of ``keys`` that has data; False if none has."""
    drawn = False
    for key in keys:
        epochs, values = series(history, key)
        if values:
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
            drawn = True
    if drawn:
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return drawn


def loss_term_keys(history: Sequence[Mapping]) -> list[str]:
    """The per-term loss keys (``train_<term>``, ``val_<term>``) other than totals/accuracy."""
    keys = {k for record in history for k in record if k.startswith(("train_", "val_"))}
    return sorted(keys - _SPLIT_KEYS)


def learning_curves_figure(history: Sequence[Mapping]) -> Figure | None:
    """Loss, accuracy, each loss term and learning rate per epoch; None without history."""
    panels = [
        (("train_loss", "val_loss"), "loss", False),
        (("train_accuracy", "val_accuracy"), "accuracy", False),
        (tuple(loss_term_keys(history)), "loss term", True),
        (("lr",), "learning rate", True),
    ]
    panels = [p for p in panels if any(series(history, k)[1] for k in p[0])]
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    for ax, (keys, ylabel, log_scale) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        _plot_keys(ax, history, keys, ylabel)
        values = [v for k in keys for v in series(history, k)[1]]
        # loss terms differ by orders of magnitude (e.g. a summed reconstruction error vs CE)
        if log_scale and values and min(values) > 0:
            ax.set_yscale("log")
    return fig


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Counts per (true, predicted) pair, coloured by the row-normalised rate."""
    counts = np.asarray(matrix, dtype=np.int64)
    num_classes = len(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    size = min(3.0 + 0.45 * num_classes, 14.0)
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class", shrink=0.8)
    labels = [class_label(class_names, i) for i in range(num_classes)]
    ax.set_xticks(range(num_classes), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(num_classes), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if num_classes <= 25:
        for (i, j), count in np.ndenumerate(counts):
            colour = "white" if rates[i, j] > 0.6 else "black"
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=colour)
    return fig


def reliability_figure(reliability: Mapping, ece: float | None) -> Figure:
    """Reliability diagram (accuracy vs confidence per bin) above a confidence histogram."""
    edges = np.asarray(reliability["edges"], dtype=float)
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    as_float = [np.nan if v is None else float(v) for v in reliability["accuracy"]]
    accuracy = np.asarray(as_float)
    counts = np.asarray(reliability["count"], dtype=float)
    fig = Figure(figsize=(5.0, 5.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    filled = counts > 0
    top.bar(
        centres[filled],
        accuracy[filled],
        width=widths[filled],
        edgecolor="#1f4e79",
        color="#4c8bc9",
        alpha=0.85,
        label="accuracy",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="#888888", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"ECE = {ece:.4f}" if ece is not None else "reliability")
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(centres, counts, width=widths, color="#9aa5b1", edgecolor="#5c6670")
    bottom.set_xlabel("confidence (top-label probability)")
    bottom.set_ylabel("samples")
    return fig
