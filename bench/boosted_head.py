"""Gradient-boosted vs ordinary final layer on breast_cancer, wine and digits (issue 17 item 6).

The same trunk (a one-hidden-layer MLP reads the standardised features directly, as in the
paper's shallow experiments) is trained two ways with equal gradient epochs: the ordinary way
(Adam on the whole network for ``steps * epochs_per_step`` epochs) and boosted
(``train.final_layer=boosted``: ``steps`` steps of ``units`` hidden units, ``epochs_per_step``
epochs each). Prints test accuracy (mean and standard deviation over seeds), the boosted
network's accuracy with its last-trained quarter and half of the units switched off, and
writes the training curves side by side (ordinary: train CE per epoch; boosted: train CE per
units added) to a PNG.

    nice -n 10 .venv/bin/python bench/boosted_head.py --seeds 0 1 2 --out /tmp/boosted_head.png
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.datasets import load_breast_cancer, load_digits, load_wine

from components.training.batches import ShardBatches
from components.training.boosted import boosted_fit, switch_off
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.steps import validate

DATASETS = {"breast_cancer": load_breast_cancer, "wine": load_wine, "digits": load_digits}
CPU = torch.device("cpu")


def split(name: str, seed: int):
    """Seeded 70/15/15 train/val/test split, standardised on the training rows."""
    x, y = DATASETS[name](return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order].astype(np.int64)
    n_train, n_val = int(0.7 * len(x)), int(0.85 * len(x))
    mean, std = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
    x = ((x - mean) / std).astype(np.float32)
    parts = [(0, n_train), (n_train, n_val), (n_val, len(x))]
    return [(x[a:b], y[a:b]) for a, b in parts]


def run(name: str, seed: int, mode: str, args) -> tuple[float, list[float], list, list[float]]:
    """Train one model; return test accuracy, the curve's x and y, and switched-off accuracies."""
    (xt, yt), (xv, yv), (xs, ys) = split(name, seed)
    train = ShardBatches(xt, yt, batch_size=64, shuffle=True, seed=seed)
    val = ShardBatches(xv, yv, batch_size=512, shuffle=False)
    test = ShardBatches(xs, ys, batch_size=512, shuffle=False)
    width = args.steps * args.units
    spec = ModelSpec(
        "mlp", (xt.shape[1],), int(yt.max()) + 1, kwargs={"hidden_sizes": [width], "dropout": 0.0}
    )
    cfg = TrainConfig(
        epochs=args.steps * args.epochs_per_step,
        lr=args.lr,
        seed=seed,
        early_stopping_patience=0,
        final_layer=mode,
        boost={"units": args.units, "epochs": args.epochs_per_step},
    )
    torch.manual_seed(seed)
    model = spec.build()
    train_fn = boosted_fit if mode == "boosted" else fit
    state = train_fn(model, train, val, cfg=cfg, spec=spec, report=lambda m, f: None)
    accuracy = validate(model, test, cfg, CPU)["val_accuracy"]
    key = "boost_units" if mode == "boosted" else "epoch"
    xs_curve = [h[key] for h in state.history]
    ys_curve = [h["train_loss"] for h in state.history]
    switched = []
    for keep in (3 * width // 4, width // 2):
        pruned = copy.deepcopy(model)
        switch_off(pruned, keep)
        switched.append(validate(pruned, test, cfg, CPU)["val_accuracy"])
    return accuracy, xs_curve, ys_curve, switched


def spread(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8, help="boosting steps T")
    parser.add_argument("--units", type=int, default=8, help="hidden units J per step")
    parser.add_argument("--epochs-per-step", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--out", default="runs/bench/boosted_head.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fig = Figure(figsize=(12, 3.4 * len(DATASETS)), layout="constrained")
    axes = fig.subplots(len(DATASETS), 2, squeeze=False)
    width = args.steps * args.units
    print(
        f"one hidden layer of {width} units; boosted: T={args.steps} x J={args.units}, "
        f"{args.epochs_per_step} epochs/step; ordinary: {args.steps * args.epochs_per_step} "
        f"epochs; Adam lr {args.lr}; seeds {args.seeds}"
    )
    header = (
        f"{'dataset':14} {'ordinary acc':>15} {'boosted acc':>15} "
        f"{'boosted -25% units':>19} {'boosted -50% units':>19} {'ordinary -25%':>15} {'s':>5}"
    )
    print(header)
    for row, name in enumerate(DATASETS):
        start = time.perf_counter()
        results = {
            mode: [run(name, s, mode, args) for s in args.seeds] for mode in ("standard", "boosted")
        }
        ordinary, boosted = results["standard"], results["boosted"]
        print(
            f"{name:14} {spread([r[0] for r in ordinary]):>15} "
            f"{spread([r[0] for r in boosted]):>15} "
            f"{spread([r[3][0] for r in boosted]):>19} {spread([r[3][1] for r in boosted]):>19} "
            f"{spread([r[3][0] for r in ordinary]):>15} {time.perf_counter() - start:5.0f}"
        )
        for col, (mode, label) in enumerate(
            (("standard", "epoch"), ("boosted", "hidden units added"))
        ):
            ax = axes[row][col]
            for seed, result in zip(args.seeds, results[mode], strict=True):
                ax.plot(result[1], result[2], marker="." if col else None, label=f"seed {seed}")
            title = "ordinary last layer" if mode == "standard" else "boosted last layer"
            ax.set(title=f"{name}: {title}", xlabel=label, ylabel="train cross-entropy")
            ax.grid(alpha=0.3)
            ax.legend()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"curves: {args.out}")


if __name__ == "__main__":
    main()
