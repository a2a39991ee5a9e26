"""DARTS (first and second order) and SD-DARTS vs random search with weight sharing, on digits.

The claim measured: weight-sharing NAS finds architectures no better than random search with
weight sharing (Li & Talwalkar, "Random Search and Reproducibility for Neural Architecture
Search", UAI 2019; Adam & Lorraine, "Understanding Neural Architecture Search Techniques", 2019,
for ENAS). Every method searches the same DARTS cell space (``components.search.darts``: a
normal and a reduction cell over none / skip / max-pool / avg-pool / sep-conv / dil-conv, the
supernet's ``--channels``, ``--cells`` and ``--nodes``) on the project's digits split, with the
same seeds, and every genotype found is retrained from scratch as the registered model
``darts_net`` by the pipeline's fit loop (``components.training.fit.fit``) with the same training
config and the search's seed, as a ``search=darts`` / ``search=random_ws`` sweep retrains it.

Methods (all run side by side in one invocation):

* ``darts-1``: DARTS, first-order architecture gradient;
* ``darts-2``: DARTS, unrolled second-order gradient (finite-difference Hessian-vector product);
* ``sd-darts``: first-order DARTS plus SD-DARTS voting-teacher self-distillation;
* ``random-ws``: one supernet trained through a uniformly sampled path per step, then
  ``--candidates`` sampled architectures ranked by validation loss under the shared weights;
* ``random-ws-long``: the same with ``--long-epochs`` (default 5x ``--search-epochs``), still
  less search wall time than first-order DARTS (0.55x measured): the equal-time comparison;
* ``random``: one uniformly sampled genotype, no search at all (the floor: does search help?).

Budget: every search trains its supernet for ``--search-epochs`` passes over the training split
(batch ``--batch-size``); the DARTS variants also take one architecture step per weight step on a
validation batch. The budget is **equal epochs**, not equal wall time: second-order DARTS pays
about 2x first-order's time per epoch and random-ws about 1/5 of it (one path per step instead
of the whole mixed supernet), and the table prints each search's wall time so that the cost
difference is visible; ``random-ws-long`` is the equal-time counterpart.

Splits: the searches train their weights on the train split and take architecture steps / rank
candidates on the val split; the retrain trains on train, keeps the checkpoint with the lowest
val loss (as the pipeline's retrain does), and the accuracy reported is that checkpoint's on the
**test** split, which no search saw (269 rows: one image is 0.0037).

Reported per method: test accuracy mean +- sample std over seeds, the paired difference to
random-ws (same seed), search and retrain wall time, how far the architecture weights moved (mean
over the normal cell's edges of the largest softmax weight; 1/6 = uniform) and the retrained
network's parameter count (parameter-free ops, skip and pooling, make it smaller). The genotypes
follow.

The DARTS architecture learning rate is ``--alpha-lr`` 3e-3, ten times the paper's 3e-4: this
search takes ~80 architecture steps, the paper's ~20,000, and at 3e-4 the weights barely leave
uniform (the genotype is then decided by noise, which would make the comparison trivially
favour the claim).

    nice -n 10 python bench/nas_vs_random_ws.py     # 5 seeds, 14 min on 1 quiet core
    python bench/nas_vs_random_ws.py --seeds 3      # ~8 min quiet (19 min at load average 10+)
    python bench/nas_vs_random_ws.py --seeds 1 --search-epochs 1 --retrain-epochs 2  # smoke
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.models.nas_ops import PRIMITIVES, Genotype
from components.search.darts import DartsConfig, sample_genotype, search_darts, search_random_ws
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit

METHODS = ("darts-1", "darts-2", "sd-darts", "random-ws", "random-ws-long", "random")
BASELINE = "random-ws"
SHORT = {"skip_connect": "skip", "max_pool_3x3": "max", "avg_pool_3x3": "avg"}
SHORT |= {"sep_conv_3x3": "sep", "dil_conv_3x3": "dil"}


def search(method: str, data: tuple, config: DartsConfig, args) -> tuple[Genotype, float, float]:
    """Run one method's search; return the genotype, its wall seconds and the alpha confidence
    (NaN for the methods that have no architecture weights)."""
    start = time.perf_counter()
    confidence = float("nan")
    if method == "random":
        genotype = sample_genotype(config.nodes, torch.Generator().manual_seed(config.seed))
    elif method.startswith("random-ws"):
        epochs = config.epochs if method == "random-ws" else long_epochs(args)
        result = search_random_ws(
            *data,
            num_classes=10,
            config=replace(config, epochs=epochs),
            num_candidates=args.candidates,
        )
        genotype = result.genotype
    else:
        variant = {"darts-1": {}, "darts-2": {"order": 2}, "sd-darts": {"sd": True}}[method]
        result = search_darts(*data, num_classes=10, config=replace(config, **variant))
        genotype = result.genotype
        confidence = float(np.max(result.alphas["normal"], axis=1).mean())
    return genotype, time.perf_counter() - start, confidence


def long_epochs(args) -> int:
    """Supernet epochs of ``random-ws-long``."""
    return args.long_epochs or 5 * args.search_epochs


def retrain(genotype: Genotype, splits: dict, seed: int, args) -> tuple[float, int]:
    """Train ``darts_net`` on the genotype; see :func:`best_val_test_accuracy`."""
    x, _ = splits["train"]
    kwargs = {
        "genotype": genotype.to_dict(),
        "channels": args.retrain_channels,
        "cells": args.retrain_cells,
    }
    spec = ModelSpec("darts_net", tuple(x.shape[1:]), 10, kwargs=kwargs)
    return best_val_test_accuracy(
        spec, splits, seed, args.retrain_epochs, args.batch_size, args.retrain_lr
    )


def best_val_test_accuracy(
    spec: ModelSpec, splits: dict, seed: int, epochs: int, batch_size: int, lr: float
) -> tuple[float, int]:
    """Train ``spec`` with the pipeline's fit loop; return the test accuracy of the checkpoint
    with the lowest val loss and the network's parameter count."""
    x, y = splits["train"]
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        early_stopping_patience=0,  # the same budget for every architecture
        seed=seed,
    )
    torch.manual_seed(seed)
    model = spec.build()
    best = {"val_loss": float("inf"), "state": None}

    def report(metrics: dict, folder: Path | None) -> None:
        if metrics["val_loss"] < best["val_loss"]:  # fit's own best-checkpoint rule
            best.update(val_loss=metrics["val_loss"], state=copy.deepcopy(model.state_dict()))

    fit(
        model,
        ShardBatches(x, y, batch_size=batch_size, shuffle=True, seed=seed),
        ShardBatches(*splits["val"], batch_size=256, shuffle=False),
        cfg=cfg,
        spec=spec,
        report=report,
    )
    model.load_state_dict(best["state"])
    model.eval()
    tx, ty = (torch.as_tensor(a) for a in splits["test"])
    with torch.no_grad():
        predicted = model(tx).logits.argmax(-1)
    params = sum(p.numel() for p in model.parameters())
    return (predicted == ty).float().mean().item(), params


def cell_text(cell: tuple[tuple[str, int], ...]) -> str:
    """``sep0 skip1 | ...``: each node's two (op, input) edges."""
    pairs = [f"{SHORT[op]}{src}" for op, src in cell]
    return " | ".join(" ".join(pairs[i : i + 2]) for i in range(0, len(pairs), 2))


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {std:.4f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--search-epochs", type=int, default=4)
    parser.add_argument("--long-epochs", type=int, default=0, help="0: 5x --search-epochs")
    parser.add_argument("--channels", type=int, default=4, help="supernet channels")
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--alpha-lr", type=float, default=3e-3)
    parser.add_argument("--candidates", type=int, default=100, help="random-ws ranked samples")
    parser.add_argument("--retrain-epochs", type=int, default=10)
    parser.add_argument("--retrain-channels", type=int, default=8)
    parser.add_argument("--retrain-cells", type=int, default=3)
    parser.add_argument("--retrain-lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sennflow-nas-") as tmp:
        path = ingest(DataSpec(source="digits"), Path(tmp)).path
        splits = {name: read_split(path, name) for name in ("train", "val", "test")}
    data = (*splits["train"], *splits["val"])
    base = DartsConfig(
        epochs=args.search_epochs,
        channels=args.channels,
        cells=args.cells,
        nodes=args.nodes,
        batch_size=args.batch_size,
        alpha_lr=args.alpha_lr,
    )
    runs = {m: [] for m in args.methods}
    started = time.perf_counter()
    for seed in range(args.seeds):
        for method in args.methods:
            genotype, search_s, confidence = search(method, data, replace(base, seed=seed), args)
            retrain_start = time.perf_counter()
            accuracy, params = retrain(genotype, splits, seed, args)
            row = {
                "seed": seed,
                "genotype": genotype,
                "accuracy": accuracy,
                "params": params,
                "search_s": search_s,
                "retrain_s": time.perf_counter() - retrain_start,
                "confidence": confidence,
            }
            runs[method].append(row)
            print(
                f"seed {seed} {method:<14} test acc {accuracy:.4f}  search {search_s:6.1f} s  "
                f"retrain {row['retrain_s']:5.1f} s",
                flush=True,
            )
    report(runs, splits, args, time.perf_counter() - started)


def report(runs: dict, splits: dict, args, total_s: float) -> None:
    """Print the settings, the per-method table, paired differences and the genotypes."""
    rows = {name: len(splits[name][0]) for name in splits}
    print(
        f"\nNAS vs random search with weight sharing on digits ({rows['train']} train / "
        f"{rows['val']} val / {rows['test']} test rows), seeds 0-{args.seeds - 1}, "
        f"{args.threads} thread(s), {total_s / 60:.1f} min in all"
    )
    print(
        f"search: supernet {args.channels} channels, {args.cells} cells, {args.nodes} nodes, "
        f"{len(PRIMITIVES)} primitives, batch {args.batch_size}, {args.search_epochs} epochs "
        f"(random-ws-long {long_epochs(args)}), DARTS alpha lr {args.alpha_lr:g}, random-ws "
        f"{args.candidates} candidates"
    )
    print(
        f"retrain: darts_net {args.retrain_channels} channels, {args.retrain_cells} cells, "
        f"{args.retrain_epochs} epochs, Adam lr {args.retrain_lr:g} cosine, batch "
        f"{args.batch_size}, best val-loss checkpoint scored on test"
    )
    head = f"{'method':<15}{'test acc mean +- std':>22}{'vs random-ws (paired)':>24}"
    print(
        "\n" + head + f"{'search s':>10}{'retrain s':>11}{'max alpha':>11}{'params':>8}   per seed"
    )
    baseline = [r["accuracy"] for r in runs.get(BASELINE, [])]
    for method, results in runs.items():
        accuracies = [r["accuracy"] for r in results]
        paired = "-"
        if baseline and method != BASELINE:
            paired = mean_std([a - b for a, b in zip(accuracies, baseline, strict=True)])
        confidence = statistics.mean(r["confidence"] for r in results)
        print(
            f"{method:<15}{mean_std(accuracies):>22}{paired:>24}"
            f"{statistics.mean(r['search_s'] for r in results):>10.1f}"
            f"{statistics.mean(r['retrain_s'] for r in results):>11.1f}"
            f"{confidence:>11.3f}"
            f"{statistics.mean(r['params'] for r in results):>8.0f}   "
            + " ".join(f"{a:.4f}" for a in accuracies)
        )
    print(f"(one test image = {1 / rows['test']:.4f}; max alpha of a uniform edge = 1/6)")
    print("\ngenotypes (node: two edges op+input; inputs 0, 1 = previous cells):")
    for method, results in runs.items():
        for r in results:
            g = r["genotype"]
            print(f"{method:<15}seed {r['seed']}  normal {cell_text(g.normal)}")
            print(f"{'':<15}        reduce {cell_text(g.reduce)}")


if __name__ == "__main__":
    main()
