"""Drawing a neural circuit diagram (:func:`components.report.circuit.trace_circuit`) with
matplotlib, in the manner of Abbott (TMLR 2024): data flows left to right, each wire is drawn as
one line per tensor axis and labelled with its shape (``N`` the batch), learned operations are
bold boxes, weights enter a box from above, parallel branches sit one above the other. Long
networks wrap onto further rows (a wire to the next row runs back along the gap between rows).
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from dataclasses import dataclass

from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

MAX_WIDTH = 10.0  # inches: the report's page width at its figure resolution
GAP = 0.72  # inches between columns: room for a wire's shape
PITCH_Y = 1.35  # inches between parallel branches
LEARNED_H, PLAIN_H = 0.8, 0.5
HEADROOM = 0.55  # above a row's boxes: the weights that enter them
AXIS_GAP = 0.035  # between the parallel lines of one wire (one per axis)
STYLE = {  # kind -> (face colour, edge colour)
    "module": ("#dbe9f6", "#1f4e79"),
    "op": ("#f2f2f2", "#555555"),
    "prototype": ("#fde2c4", "#b35900"),
    "readout": ("#dcefd6", "#2e6b1f"),
}


@dataclass
class _Place:
    x: float  # centre
    y: float
    w: float
    h: float
    row: int
    layer: int  # the column, counted over all rows


def shape_label(shape: list[int], batch: int) -> str:
    """``N×3×32×32``: the sizes joined by ×, the leading batch axis written ``N``."""
    sizes = [str(s) for s in shape]
    if sizes and shape[0] == batch:
        sizes[0] = "N"
    return "×".join(sizes) or "scalar"


def circuit_figure(circuit: dict) -> Figure:
    """The diagram of ``circuit`` as a matplotlib figure (at most about 10 inches wide)."""
    places, rows, width = _layout(circuit)
    height = sum(rows)
    fig = Figure(figsize=(width + 0.1 + GAP / 2, height + 0.4))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.1, width + GAP / 2)
    ax.set_ylim(-height - 0.4, 0)
    ax.axis("off")
    row_bottom = [-sum(rows[: r + 1]) for r in range(len(rows))]
    lanes: dict[int, int] = defaultdict(int)
    lines: list[list[tuple[float, float]]] = []  # every wire's lines, drawn as one collection
    for wire in circuit["wires"]:
        source, target = places[wire["source"]], places[wire["target"]]
        route = _route(source, target, row_bottom, lanes)
        lines += _draw_wire(ax, route, wire["shape"], circuit["batch"])
    for box in circuit["boxes"]:
        lines += _draw_box(ax, box, places[box["id"]], circuit)
    ax.add_collection(LineCollection(lines, colors="#3a3a3a", linewidths=0.7, zorder=1))
    _legend(ax, -height - 0.05, circuit)
    return fig


# --- layout -----------------------------------------------------------------------------------


def _layers(circuit: dict) -> dict[int, int]:
    """Each box's column: the longest path (in wires) from the input."""
    incoming = defaultdict(list)
    for wire in circuit["wires"]:
        incoming[wire["target"]].append(wire["source"])
    layer: dict[int, int] = {}

    def depth(index: int) -> int:
        if index not in layer:
            layer[index] = 1 + max((depth(s) for s in incoming[index]), default=-1)
        return layer[index]

    for box in circuit["boxes"]:
        depth(box["id"])
    return layer


def _layout(circuit: dict) -> tuple[dict[int, _Place], list[float], float]:
    """Where each box goes, the height of each row and the widest row's width."""
    layer = _layers(circuit)
    columns: dict[int, list[int]] = defaultdict(list)
    for index in sorted(layer):
        columns[layer[index]].append(index)
    sizes = {b["id"]: _box_size(b, circuit) for b in circuit["boxes"]}
    widths = {c: max(sizes[i][0] for i in members) for c, members in columns.items()}
    last = max(columns)  # the logits may stick out a little rather than wrap alone
    row_of, left, cursor, row = {}, {}, 0.0, 0
    for column in sorted(columns):
        if cursor > GAP and cursor + widths[column] > MAX_WIDTH and column != last:
            row, cursor = row + 1, GAP  # room on the left for the wire coming back
        row_of[column], left[column] = row, cursor
        cursor += widths[column] + GAP
    slots = [max(len(columns[c]) for c in columns if row_of[c] == r) for r in range(row + 1)]
    rows = [HEADROOM + n * PITCH_Y + 0.3 for n in slots]
    places = {}
    for column, members in columns.items():
        r = row_of[column]
        top = -sum(rows[:r]) - HEADROOM
        offset = (slots[r] - len(members)) * PITCH_Y / 2  # centre a column's branches
        for slot, index in enumerate(members):
            w, h = sizes[index]
            x = left[column] + widths[column] / 2
            places[index] = _Place(x, top - offset - (slot + 0.5) * PITCH_Y, w, h, r, column)
    width = max(left[c] + widths[c] for c in columns)
    return places, rows, width


def _box_size(box: dict, circuit: dict) -> tuple[float, float]:
    """Wide enough for its text (6.2 pt: about 0.052 inch a character)."""
    if box["kind"] in ("input", "output"):
        return 0.1 + 0.075 * len(box["name"]), 0.34
    title, detail = _texts(box, circuit)
    chars = max([len(title) * 1.2, *(len(line) for line in detail.splitlines())])
    learned = box["params"] > 0 or box["kind"] in ("prototype", "readout")
    return max(0.75, 0.052 * chars + 0.22), LEARNED_H if learned else PLAIN_H


def _route(
    source: _Place, target: _Place, row_bottom: list[float], lanes: dict[int, int]
) -> list[tuple[float, float]]:
    """An orthogonal path from the source's right edge to the target's left edge."""
    sx, sy = source.x + source.w / 2, source.y
    tx, ty = target.x - target.w / 2, target.y
    if target.row == source.row and target.layer == source.layer + 1:
        if abs(sy - ty) < 1e-6:
            return [(sx, sy), (tx, ty)]
        mid = tx - GAP / 2
        return [(sx, sy), (mid, sy), (mid, ty), (tx, ty)]
    # a skip wire runs below its row; a wire to a later row, back along the gap below this one
    lane = lanes[source.row]
    lanes[source.row] += 1
    y = row_bottom[source.row] + 0.22 - 0.07 * lane
    gx, hx = sx + GAP / 4 + 0.05 * lane, tx - GAP / 2
    return [(sx, sy), (gx, sy), (gx, y), (hx, y), (hx, ty), (tx, ty)]


# --- drawing ----------------------------------------------------------------------------------


def _draw_wire(ax, route: list[tuple[float, float]], shape: list[int], batch: int) -> list:
    """Write the shape on the wire's last stretch; return its lines: one per axis, offset in
    parallel."""
    count = max(1, min(len(shape), 5))
    lines = []
    for i in range(count):
        d = (i - (count - 1) / 2) * AXIS_GAP
        last = len(route) - 1
        lines.append([(x + (d if 0 < k < last else 0), y + d) for k, (x, y) in enumerate(route)])
    (x0, y0), (x1, y1) = route[-2], route[-1]
    if len(route) > 2:
        (x0, y0) = route[0]
    ax.text(
        (x0 + x1) / 2 if len(route) == 2 else x1 - 0.05,
        y1 + 0.07,
        shape_label(shape, batch),
        ha="center" if len(route) == 2 else "right",
        va="bottom",
        fontsize=6.3,
        color="#222222",
        zorder=4,
    )
    return lines


def _draw_box(ax, box: dict, place: _Place, circuit: dict) -> list:
    """Draw the box and its text; return the lines of the weights entering it."""
    if box["kind"] in ("input", "output"):
        ax.text(place.x, place.y, box["name"], ha="center", va="center", fontsize=8,
                fontweight="bold", zorder=5,
                bbox={"boxstyle": "round,pad=0.3", "fc": "#ffffff", "ec": "#888888"})  # fmt: skip
        return []
    face, edge = STYLE.get(box["kind"], STYLE["op"])
    learned = box["params"] > 0
    if box.get("repeat", 1) > 1:  # a stack of k blocks of one kind
        _rectangle(ax, place, face, edge, 1.0, dx=0.06, dy=0.06, zorder=2)
    _rectangle(ax, place, face, edge, 2.0 if learned else 0.8, zorder=3)
    title, detail = _texts(box, circuit)
    top = place.y + place.h / 2
    ax.text(place.x, top - 0.09, title, ha="center", va="top", fontsize=7.2,
            fontweight="bold", zorder=5)  # fmt: skip
    ax.text(place.x, top - 0.25, detail, ha="center", va="top", fontsize=6.2,
            color="#333333", zorder=5, linespacing=1.1)  # fmt: skip
    return _draw_weights(ax, box, place)


def _rectangle(ax, place: _Place, face, edge, lw, dx=0.0, dy=0.0, zorder=3) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (place.x - place.w / 2 + dx, place.y - place.h / 2 + dy),
            place.w,
            place.h,
            boxstyle="round,pad=0.0,rounding_size=0.06",
            fc=face,
            ec=edge,
            lw=lw,
            zorder=zorder,
        )
    )


def _texts(box: dict, circuit: dict) -> tuple[str, str]:
    """The box's title (its module or role) and up to three lines below it."""
    name, operation = box["name"], box["operation"]
    parts = name.split(".")
    title = ".".join(parts[-2:]) if len(parts) > 1 and parts[-1].isdigit() else parts[-1]
    lines = []
    if box["kind"] == "prototype":
        protos = sum(w["shape"][0] for w in box["weights"] if w["prototype"])
        lines.append(f"similarity to {protos} prototypes")
    if operation != title:
        lines += textwrap.wrap(operation, 28)[: 3 - len(lines)]
    if box["params"]:
        lines.append(f"{_count(box['params'])} params")
    return title[:22], "\n".join(lines[:3])


def _count(n: int) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _draw_weights(ax, box: dict, place: _Place) -> list:
    """Weights enter from above: the prototypes first (bold), then the others, at most two;
    returns their lines."""
    weights = sorted(box["weights"], key=lambda w: not w["prototype"])[:2]
    if box["kind"] == "module":  # a module's own weights: its parameters in small print
        weights = weights[:1]
    top, lines = place.y + place.h / 2, []
    for i, weight in enumerate(weights):
        x = place.x + (i - (len(weights) - 1) / 2) * 0.62
        sizes = "×".join(map(str, weight["shape"]))
        prototype = weight["prototype"]
        label = f"prototypes P×D\n{sizes}" if prototype else f"W {sizes}"
        count = max(1, min(len(weight["shape"]), 5))
        for k in range(count):
            d = (k - (count - 1) / 2) * AXIS_GAP
            lines.append([(x + d, top), (x + d, top + 0.2)])
        ax.text(x, top + 0.21, label, ha="center", va="bottom", fontsize=6.2, zorder=4,
                color="#b35900" if prototype else "#444444",
                fontweight="bold" if prototype else "normal", linespacing=1.0)  # fmt: skip
    return lines


def _legend(ax, y: float, circuit: dict) -> None:
    kinds = {box["kind"] for box in circuit["boxes"]}
    text = (
        f"{circuit['model']}, traced on N = {circuit['batch']} inputs. Wires: one line per tensor "
        "axis, shape written on them. Bold boxes are learned, stacked boxes repeat a block"
    )
    if "prototype" in kinds:
        text += "; orange: prototype layer (the prototypes P×D enter from above)"
    if "readout" in kinds:
        text += "; green: last layer (prototype similarities to class logits)"
    ax.text(0.05, y, text + ".", ha="left", va="top", fontsize=6.5, color="#555555")
