"""FTWT on digits: FLOPs reduction vs accuracy drop, predicted beside measured FLOPs.

For each seed, ``model=cnn`` (default channels 32, 64) is trained on the digits train split
with the pipeline's defaults (Adam 1e-3, batch 64, ``--epochs``), then
:func:`components.pruning.ftwt_stage.run_ftwt` trains the mask predictors (backbone frozen) and
fine-tunes under the predicted masks, once per ``--mass``, each from a copy of the same trained
network. Prints, per mass, mean and standard deviation over seeds of: dense and gated test
accuracy, their difference in points, and the conv-MAC reduction predicted before the
predictors were trained and measured with them.

    nice -n 10 .venv/bin/python bench/ftwt.py --seeds 0 1 2 --masses 0.8 0.9
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.models import create_model
from components.pruning.ftwt_stage import run_ftwt
from components.training.ftwt_config import FtwtConfig


def train_cnn(x, y, *, epochs: int, seed: int) -> torch.nn.Module:
    """``model=cnn`` trained as the pipeline trains it (Adam 1e-3, batch 64, cosine LR)."""
    torch.manual_seed(seed)
    model = create_model("cnn", input_shape=tuple(x.shape[1:]), num_classes=10)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(64):
            loss = model.loss(model(x[idx]), x[idx], y[idx])["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def spread(values: list[float]) -> str:
    return (
        f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--masses", type=float, nargs="+", default=[0.8, 0.9])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = ingest(DataSpec(source="digits"), Path(tmp)).path
        train, test = (tuple(map(torch.as_tensor, read_split(path, s))) for s in ("train", "test"))
    rows = {mass: [] for mass in args.masses}
    for seed in args.seeds:
        started = time.perf_counter()
        model = train_cnn(*train, epochs=args.epochs, seed=seed)
        for mass in args.masses:
            section, _ = run_ftwt(
                copy.deepcopy(model), train, test, FtwtConfig(mass=mass), seed=seed
            )
            rows[mass].append(section)
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    print(
        f"\ncnn on digits, {len(train[1])} train / {len(test[1])} test, seeds {args.seeds}, "
        f"{args.epochs} epochs, FtwtConfig defaults except mass (mean ± sd over seeds)"
    )
    header = (
        "mass",
        "acc dense",
        "acc gated",
        "drop (points)",
        "reduction predicted",
        "reduction measured",
    )
    print(" | ".join(header))
    for mass, sections in rows.items():
        dense = [s["accuracy"]["dense"] for s in sections]
        gated = [s["accuracy"]["gated"] for s in sections]
        drop = [100 * (d - g) for d, g in zip(dense, gated, strict=True)]
        predicted = [s["reduction"]["predicted"] for s in sections]
        measured = [s["reduction"]["measured"] for s in sections]
        print(
            " | ".join(
                [
                    str(mass),
                    spread(dense),
                    spread(gated),
                    spread(drop),
                    spread(predicted),
                    spread(measured),
                ]
            )
        )


if __name__ == "__main__":
    main()
