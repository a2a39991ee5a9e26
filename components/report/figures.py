"""Figures of training and evaluation: learning curves, confusion matrix, reliability diagram.

Built on :class:`matplotlib.figure.Figure` directly (no pyplot), so they are safe to draw from
worker threads and leave no global figure state behind.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

_DPI = 110
PALETTE_ABOVE = 400_000  # bytes: a larger PNG (photos) is re-encoded with a 256-colour palette
_SPLIT_KEYS = {"train_loss", "val_loss", "train_accuracy", "val_accuracy"}


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes; figures full of photos get a 256-colour palette, which
    keeps them about a third of the size and looks the same at report scale."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    if buffer.tell() <= PALETTE_ABOVE:
        return buffer.getvalue()
    from PIL import Image

    buffer.seek(0)
    palette = Image.open(buffer).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
    smaller = io.BytesIO()
    palette.save(smaller, format="png", optimize=True)
    return smaller.getvalue()


LABEL_WIDTH = 16  # characters per line of a class name drawn in a figure (two lines at most)
_BREAK_AFTER = re.compile(r"(?<=[+_\-/ .,])")


def wrap_label(text: str, width: int = LABEL_WIDTH, max_lines: int = 2) -> str:
    """``text`` on at most ``max_lines`` lines of ``width`` characters, broken after ``+``,
    ``_``, ``-``, ``/``, ``.``, ``,`` or spaces where it can; an ellipsis marks a cut."""
    lines = [""]
    for token in (t for t in _BREAK_AFTER.split(text) if t):
        for start in range(0, len(token), width):
            piece = token[start : start + width]
            if lines[-1] and len(lines[-1]) + len(piece) > width:
                lines.append("")
            lines[-1] += piece
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1] + "\u2026"
    return "\n".join(line.rstrip() for line in lines)


def class_label(class_names: Sequence[str], index: int | None, width: int | None = None) -> str:
    """The name of class ``index`` (wrapped by :func:`wrap_label` to ``width`` if given), or the
    index itself when no name is known."""
    if index is None:
        return "?"
    name = str(class_names[index]) if 0 <= index < len(class_names) else str(index)
    return name if width is None else wrap_label(name, width)


def sample_label(
    index, true: int | None, predicted: int | None, class_names: Sequence[str], probability=None
) -> str:
    """``#index``, ``true: <class>`` and ``predicted: <class> (p%)`` on their own lines, long
    class names wrapped (and indented) below their key."""
    confidence = f" ({probability:.0%})" if probability is not None else ""
    lines = [f"#{index}"]
    for key, k, suffix in (("true", true, ""), ("predicted", predicted, confidence)):
        name = class_label(class_names, k, LABEL_WIDTH) + suffix
        fits = "\n" not in name and len(key) + len(name) + 2 <= LABEL_WIDTH + 6
        lines.append(f"{key}: {name}" if fits else f"{key}:\n  " + name.replace("\n", "\n  "))
    return "\n".join(lines)


def label_left(ax, text: str, fontsize: float = 7) -> None:
    """Write ``text`` horizontally to the left of ``ax`` (a row label)."""
    ax.set_ylabel(
        text, rotation=0, ha="right", va="center", multialignment="left", fontsize=fontsize
    )


def label_sample(ax, sample: Mapping, class_names: Sequence[str], fontsize: float = 7) -> None:
    """Label an explained sample's panel on its left with :func:`sample_label`."""
    text = sample_label(
        sample["index"], sample["true"], sample["predicted"], class_names, sample.get("probability")
    )
    label_left(ax, text, fontsize)


def series(
    history: Sequence[Mapping], key: str, x: str = "epoch"
) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key`` over the rows that report it; the x value is each row's
    ``x`` (``epoch``, or ``step`` for histories kept per optimiser step), else its position."""
    epochs, values = [], []
    for row, record in enumerate(history):
        if record.get(key) is not None:
            epochs.append(float(record.get(x, row + 1)))
            values.append(float(record[key]))
    return epochs, values


def history_axis(history: Sequence[Mapping]) -> str:
    """What a history's rows count: ``step`` when they carry optimiser steps and no epochs
    (``sennflow pfn-train``), else ``epoch``."""
    stepped = bool(history) and all("step" in row and "epoch" not in row for row in history)
    return "step" if stepped else "epoch"


def _plot_keys(
    ax, history: Sequence[Mapping], keys: Sequence[str], ylabel: str, x: str = "epoch"
) -> bool:
    """Plot each of ``keys`` that has data against ``x``; False if none has."""
    drawn = False
    for key in keys:
        epochs, values = series(history, key, x)
        if values:
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
            drawn = True
    if drawn:
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return drawn


def loss_term_keys(history: Sequence[Mapping]) -> list[str]:
    """The per-term loss keys (``train_<term>``, ``val_<term>``) other than totals/accuracy."""
    keys = {k for record in history for k in record if k.startswith(("train_", "val_"))}
    return sorted(keys - _SPLIT_KEYS)


def learning_curves_figure(history: Sequence[Mapping], x: str = "epoch") -> Figure | None:
    """Loss, accuracy, each loss term and learning rate per ``x`` (the rows' ``epoch``, or
    their ``step``: see :func:`history_axis`); None without history."""
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
        _plot_keys(ax, history, keys, ylabel, x)
        values = [v for k in keys for v in series(history, k, x)[1]]
        # loss terms differ by orders of magnitude (e.g. a summed reconstruction error vs CE)
        if log_scale and values and min(values) > 0:
            ax.set_yscale("log")
    return fig


_NAMED_TICKS = 40  # most class names along a confusion-matrix axis; more are thinned out


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Counts per (true, predicted) pair, coloured by the row-normalised rate.

    Axes are labelled with class names (shortened); with more than 40 classes every k-th class
    is named so the names stay legible.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    num_classes = len(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    size = min(3.0 + 0.45 * num_classes, 14.0)
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class", shrink=0.8)
    step = -(-num_classes // _NAMED_TICKS)
    ticks = range(0, num_classes, step)
    labels = [class_label(class_names, i, LABEL_WIDTH) for i in ticks]
    font = 8 if num_classes <= 20 else 6
    slanted = {"rotation": 45, "ha": "right", "rotation_mode": "anchor"}
    ax.set_xticks(ticks, labels, fontsize=font, **(slanted if step == 1 else {"rotation": 90}))
    ax.set_yticks(ticks, labels, fontsize=font)
    ax.set_xlabel("predicted" + (f" (every {step}th class named)" if step > 1 else ""))
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
