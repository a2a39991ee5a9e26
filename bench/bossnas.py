"""BossNAS vs DARTS vs random search with weight sharing on digits, at equal supernet epochs.

The claim (Li et al., ICCV 2021): block-wise self-supervised search by ensemble bootstrapping
rates architectures well enough that the searched hybrid CNN-transformer (BossNet-T) beats
hand-made and NAS-found networks of similar cost (82.5% ImageNet top-1, 2.4 points above
EfficientNet at comparable compute time; rating Spearman 0.78 on MBConv / 0.76 on NATS-Bench).
Here every method searches on the project's digits train split and rates / ranks on val:

* ``bossnas``: :func:`components.search.bossnas.search_bossnas` (3 blocks x 2 layers, 3
  resolutions, 4 paths per step, momentum 0.99 -> 1), ``--block-epochs`` per block, no labels;
  its architecture is retrained as ``bossnas_net`` (``--width`` channels);
* ``darts``: first-order DARTS on the DARTS cell space, ``--search-epochs`` supernet epochs;
* ``random-ws``: random search with weight sharing on the same cell space, same epochs;
  both genotypes are retrained as ``darts_net`` (8 channels, 3 cells), as in
  ``bench/nas_vs_random_ws.py``.

Budget: equal supernet epochs, ``blocks * block_epochs == search_epochs`` (3 by default); the
spaces differ (BossNAS's is HyTra, the others' the DARTS cell), so the wall times are printed.
Every retrain uses the pipeline's fit loop, the same epochs, Adam lr and seed as its search, and
the best-val-loss checkpoint is scored on the test split (269 rows, one image = 0.0037).

    nice -n 10 env OMP_NUM_THREADS=1 python bench/bossnas.py              # 3 seeds
    python bench/bossnas.py --seeds 1 --search-epochs 3 --retrain-epochs 1  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from nas_vs_random_ws import best_val_test_accuracy  # a sibling script: bench/ is on sys.path

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.models.hytra import path_name
from components.search.bossnas import BossNASConfig, search_bossnas
from components.search.darts import DartsConfig, search_darts, search_random_ws
from components.training.checkpoint import ModelSpec

METHODS = ("bossnas", "darts", "random-ws")


def search(method: str, splits: dict, seed: int, args) -> tuple[str, dict, float]:
    """One search: the retrained model's name and keyword arguments, and the search seconds."""
    (x, y), (vx, vy) = splits["train"], splits["val"]
    start = time.perf_counter()
    if method == "bossnas":
        blocks = args.search_epochs // args.block_epochs
        cfg = BossNASConfig(epochs=args.block_epochs, blocks=blocks, seed=seed)
        result = search_bossnas(x, vx, config=cfg)
        kwargs = {"architecture": {"blocks": result.to_dict()["blocks"]}, "width": args.width}
        return "bossnas_net", kwargs, time.perf_counter() - start
    cfg = DartsConfig(epochs=args.search_epochs, alpha_lr=3e-3, seed=seed)
    if method == "darts":
        genotype = search_darts(x, y, vx, vy, num_classes=10, config=cfg).genotype
    else:
        genotype = search_random_ws(x, y, vx, vy, num_classes=10, config=cfg).genotype
    kwargs = {"genotype": genotype.to_dict(), "channels": 8, "cells": 3}
    return "darts_net", kwargs, time.perf_counter() - start


def retrain(name: str, kwargs: dict, splits: dict, seed: int, args) -> tuple[float, int]:
    """Test accuracy of the best-val-loss checkpoint, and the parameter count."""
    spec = ModelSpec(name, tuple(splits["train"][0].shape[1:]), 10, kwargs=kwargs)
    return best_val_test_accuracy(spec, splits, seed, args.retrain_epochs, 64, 0.01)


def describe(name: str, kwargs: dict) -> str:
    if name == "bossnas_net":
        return " | ".join(path_name(b) for b in kwargs["architecture"]["blocks"])
    return "normal " + " ".join(f"{op}{src}" for op, src in kwargs["genotype"]["normal"])


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {std:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--search-epochs", type=int, default=3, help="supernet epochs (all)")
    parser.add_argument("--block-epochs", type=int, default=1, help="BossNAS epochs per block")
    parser.add_argument("--retrain-epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=16, help="bossnas_net channels")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="sennflow-bossnas-") as tmp:
        path = ingest(DataSpec(source="digits"), Path(tmp)).path
        splits = {name: read_split(path, name) for name in ("train", "val", "test")}
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    started = time.perf_counter()
    for seed in range(args.seeds):
        for method in METHODS:
            name, kwargs, search_s = search(method, splits, seed, args)
            accuracy, params = retrain(name, kwargs, splits, seed, args)
            row = {"acc": accuracy, "params": params, "s": search_s, "arch": describe(name, kwargs)}
            runs[method].append(row)
            print(
                f"seed {seed} {method:<10} test acc {accuracy:.4f} search {search_s:6.1f} s "
                f"params {params:,}  {row['arch']}",
                flush=True,
            )
    print(
        f"\nDigits, seeds 0-{args.seeds - 1}, {args.search_epochs} supernet epochs each "
        f"(BossNAS: {args.search_epochs // args.block_epochs} blocks x {args.block_epochs}), "
        f"retrain {args.retrain_epochs} epochs; {(time.perf_counter() - started) / 60:.1f} min"
    )
    print(
        f"{'method':<11}{'test acc mean +- std':>22}{'vs random-ws (paired)':>24}"
        f"{'search s':>10}{'params':>9}"
    )
    base = [r["acc"] for r in runs["random-ws"]]
    for method, rows in runs.items():
        accs = [r["acc"] for r in rows]
        paired = (
            "-"
            if method == "random-ws"
            else mean_std([a - b for a, b in zip(accs, base, strict=True)])
        )
        print(
            f"{method:<11}{mean_std(accs):>22}{paired:>24}"
            f"{statistics.mean(r['s'] for r in rows):>10.1f}"
            f"{statistics.mean(r['params'] for r in rows):>9,.0f}"
        )


if __name__ == "__main__":
    main()
