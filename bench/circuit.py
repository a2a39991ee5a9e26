"""What the report's neural circuit diagram costs and covers, for every registered model.

For each model at full size (not tiny) on the input shape of ``digits`` (1x8x8) and of ``parts``
(3x32x32), three times: the seconds to trace the diagram (one forward pass with hooks, then
grouping) and to draw it to PNG, beside the seconds of one plain forward pass of the same batch
(the baseline), the number of boxes, and the share of the model's parameters the diagram draws
(parameters outside it belong to branches the logits do not use, e.g. a decoder). Neural circuit
diagrams (Abbott, TMLR 2024) claim a close correspondence between diagram and implementation;
the share is that correspondence counted in parameters.

Run: ``nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python -m bench.circuit``
"""

from __future__ import annotations

import statistics
import time

import torch

from components.models import create_model, list_models
from components.report.circuit import trace_circuit
from components.report.circuit_figure import circuit_figure
from components.report.circuit_record import example_batch
from components.report.figures import to_png

SHAPES = {"digits": (1, 8, 8), "parts": (3, 32, 32)}
REPEATS = 3
# Keyword arguments a full-size model cannot be built without.
REQUIRED = {"darts_net": "components.models.darts_net:TINY_GENOTYPE"}


def _required(name: str) -> dict:
    if name not in REQUIRED:
        return {}
    module, attr = REQUIRED[name].split(":")
    return {"genotype": getattr(__import__(module, fromlist=[attr]), attr)}


def _seconds(fn) -> list[float]:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _spread(times: list[float]) -> str:
    return f"{statistics.mean(times) * 1e3:7.0f} ± {statistics.stdev(times) * 1e3:4.0f}"


def main() -> None:
    print(f"{'model':14s} {'data':7s} {'boxes':>5s} {'drawn params':>13s} "
          f"{'forward ms':>13s} {'trace ms':>13s} {'draw ms':>13s}")  # fmt: skip
    for data, shape in SHAPES.items():
        for name in list_models():
            torch.manual_seed(0)
            try:
                model = create_model(name, input_shape=shape, num_classes=10, **_required(name))
            except ValueError as err:  # e.g. an RGB-only trunk on digits
                print(f"{name:14s} {data:7s} not built: {err}")
                continue
            model.eval()
            x = example_batch(shape)
            with torch.no_grad():
                forward = _seconds(lambda m=model, x=x: m(x))
            circuit = trace_circuit(model, shape)
            trace = _seconds(lambda m=model, s=shape: trace_circuit(m, s))
            draw = _seconds(lambda c=circuit: to_png(circuit_figure(c)))
            drawn = sum(b["params"] for b in circuit["boxes"])
            total = sum(p.numel() for p in model.parameters())
            boxes = len(circuit["boxes"]) - 2
            print(f"{name:14s} {data:7s} {boxes:5d} {drawn / total:12.1%} "
                  f"{_spread(forward)} {_spread(trace)} {_spread(draw)}")  # fmt: skip


if __name__ == "__main__":
    main()
