"""Neural activation patterns on digits (Geng et al. 2023: NAPs recall 84% of MNIST's test
inputs while no input in a NAP's region is misclassified): the ``naps`` trust check's figures
for ``mlp`` over a few seeds, side by side for the most refined NAP (delta = 1) and the
delta-relaxed ones (0.99, the check's default, and 0.95), on the last hidden ReLU layer (the
check's default) and on every hidden layer together (the reference code's MNIST setting), with
an untrained ``mlp`` of the same seed as the control.

Each seed trains ``mlp`` (256-128 ReLU, dropout 0.1) in-process with the project's fit loop
(Adam, ``--epochs`` epochs, cosine schedule) and runs
:func:`components.explain.checks.naps.analyse` on the train split (mining) and the test split.
Prints, per setting, the mean ± sd over seeds of test coverage (share of test inputs that
satisfy their own class's NAP), property violations (test inputs that satisfy class c's NAP
yet are predicted as another), class pairs not shown exclusive (of 45) and test accuracy.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/naps.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.evaluation.predict import predict_logits
from components.explain.checks.naps import analyse
from components.models.base import create_model
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit

SETTINGS = [(layer, delta) for layer in (None, "all") for delta in (1.0, 0.99, 0.95)]


def train_mlp(splits: dict, seed: int, epochs: int) -> torch.nn.Module:
    x, y = splits["train"]
    torch.manual_seed(seed)
    model = create_model("mlp", input_shape=tuple(x.shape[1:]), num_classes=10)
    if epochs:
        fit(
            model,
            ShardBatches(x, y, batch_size=64, shuffle=True, seed=seed),
            ShardBatches(*splits["val"], batch_size=512, shuffle=False),
            cfg=TrainConfig(epochs=epochs, seed=seed, early_stopping_patience=0),
            spec=ModelSpec("mlp", tuple(x.shape[1:]), 10),
            report=lambda *_: None,
        )
    return model.eval()


def measure(model, splits: dict) -> dict:
    x_test, y_test = splits["test"]
    accuracy = float((predict_logits(model, x_test).argmax(1).numpy() == y_test).mean())
    rows = {}
    for layer, delta in SETTINGS:
        r = analyse(model, splits["train"], splits["test"], layer=layer, delta=delta)
        rows[(layer, delta)] = {
            "coverage": r["coverage"],
            "violations": sum(r["violations"]),
            "non_exclusive": len(r["non_exclusive"]),
            "fixed": float(np.mean(r["patterns"] != 0, axis=1).mean()),
            "accuracy": accuracy,
        }
    return rows


def spread(values, fmt: str = ".3f") -> str:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} ± {sd:{fmt}}"


def summarise(title: str, runs: list[dict]) -> None:
    print(f"\n{title}: mean ± sd over {len(runs)} seeds (paper, MNIST 256x4/256x6: recall 84%)")
    print(
        f"{'layer':8s} {'delta':>5s}  {'coverage':15s}  {'violations':13s}  "
        f"{'not exclusive':13s}  {'fixed share':15s}  test accuracy"
    )
    for layer, delta in SETTINGS:
        rows = [run[(layer, delta)] for run in runs]
        print(
            f"{layer or 'last':8s} {delta:5.2f}  {spread(r['coverage'] for r in rows):15s}  "
            f"{spread((r['violations'] for r in rows), '.1f'):13s}  "
            f"{spread((r['non_exclusive'] for r in rows), '.1f'):13s}  "
            f"{spread(r['fixed'] for r in rows):15s}  "
            f"{spread(r['accuracy'] for r in rows)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = ingest(DataSpec(source="digits"), Path(folder)).path
        splits = {split: read_split(path, split) for split in ("train", "val", "test")}
        print({split: len(xy[1]) for split, xy in splits.items()}, "rows")
        trained, untrained = [], []
        for seed in args.seeds:
            start = time.perf_counter()
            trained.append(measure(train_mlp(splits, seed, args.epochs), splits))
            untrained.append(measure(train_mlp(splits, seed, 0), splits))
            print(f"  seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    summarise(f"mlp trained {args.epochs} epochs", trained)
    summarise("mlp untrained (control)", untrained)


if __name__ == "__main__":
    main()
