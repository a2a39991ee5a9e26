"""Seconds per input row of a batched no-grad model call, by rows per call, on this machine.

The explain stage's methods and metrics, and the global surrogate, batch their model calls by
:func:`components.perturbation.removal.rows_per_call`: at most ``CALL_BYTES`` of input per call on
a GPU, ``CPU_CALL_BYTES`` on a CPU. This measures why the CPU's budget is small: per row, a conv
net's call of hundreds of rows costs more than one of tens once its activations outgrow the
caches. Each model is randomly initialised (the cost does not depend on the weights); the last
column is what ``rows_per_call`` picks, and ``*`` marks the measured count at or below it.

    python bench/call_rows.py
    python bench/call_rows.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from components.perturbation.removal import rows_per_call
from components.training.checkpoint import ModelSpec

CASES = [  # name, model, input shape, params
    ("protopnet, parts 32x32", "protopnet", (3, 32, 32), {}),
    ("protopnet, 64x64", "protopnet", (3, 64, 64), {}),
    ("protopnet resnet18, 224x224", "protopnet", (3, 224, 224), {"backbone": "resnet18"}),
    ("cnn, digits 8x8", "cnn", (1, 8, 8), {}),
    ("mlp, digits", "mlp", (64,), {}),
]
ROWS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)


def per_row(model: torch.nn.Module, x: torch.Tensor, rows: int) -> float:
    """Seconds per row over all of ``x`` in calls of ``rows`` rows (after one warm-up call)."""
    model(x[:rows])
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in x.split(rows):
        model(batch)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch threads {torch.get_num_threads()}; ms per row by rows per call")
    print(f"{'model':30s} {'KiB/row':>8s}  " + " ".join(f"{r:>7d}" for r in ROWS) + "  picks")
    with torch.no_grad():
        for name, model_name, shape, params in CASES:
            spec = ModelSpec.configured(model_name, shape, 4, tiny=False, params=params)
            model = spec.build().eval().to(device)
            total = 256 if shape[-1] >= 224 and device.type == "cpu" else 1024
            x = torch.randn(total, *shape, device=device)
            chosen = rows_per_call(shape, 1024, device)
            cells = []
            for rows in ROWS:
                if rows > total:
                    cells.append(f"{'-':>7s}")
                    continue
                mark = "*" if rows <= chosen < rows * 2 else " "
                cells.append(f"{per_row(model, x, rows) * 1e3:6.3f}{mark}")
            kib = 4 * torch.tensor(shape).prod().item() / 1024
            print(f"{name:30s} {kib:8.1f}  " + " ".join(cells) + f"  {chosen}", flush=True)


if __name__ == "__main__":
    main()
