"""Lottery tickets on digits (Frankle & Carbin 2019): winning tickets vs the dense network and
vs the same masks re-initialised, for ``mlp`` and ``cnn``, over a few seeds.

Each seed runs :func:`components.pruning.lottery.run_lottery` in-process (the flow's rounds
without Ray's start-up): a dense round, then ``--rounds`` rounds of layer-wise magnitude
pruning with rewinding to initialisation, each ticket's masks also trained from a fresh random
initialisation. The paper's LeNet setting: Adam at a constant learning rate (1.2e-3 there),
early stopping at the lowest validation loss, fc layers 20% per round, the output layer 10%.
Departures, for a ~10-minute run on 2 shared cores: digits (8x8) instead of MNIST, at most
``--epochs`` epochs with patience 5, and the cnn's convolutions pruned at 20% a round (the
paper: 10-15%) so that 8 rounds reach 10-20% of its weights.

Prints, per model, the mean and standard deviation over seeds of test accuracy and
early-stopping epoch at every round for tickets and controls, then the verdict at the round
whose remaining weights are nearest 15% (a ticket "matches" within ``--tolerance``).

    nice -n 10 .venv/bin/python bench/lottery.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.pruning.imp_config import PruneConfig
from components.pruning.lottery import LotteryStore, run_lottery
from components.pruning.round_trainers import in_process_rounds
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig

CONV_RATE = {"mlp": 0.1, "cnn": 0.2}


def run_model(model: str, seeds, args, splits) -> list[list[dict]]:
    spec = ModelSpec(model, (1, 8, 8), 10)
    runs = []
    for seed in seeds:
        cfg = TrainConfig(
            epochs=args.epochs,
            lr=args.lr,
            lr_schedule="none",
            early_stopping_patience=5,
            seed=seed,
        )
        config = PruneConfig(rounds=args.rounds, conv_rate=CONV_RATE[model], seed=seed)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            store = LotteryStore(Path(folder))
            runs.append(run_lottery(spec, config, in_process_rounds(spec, cfg, *splits), store))
        print(f"  {model} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return runs


def spread(values) -> str:
    values = list(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def summarise(model: str, runs: list[list[dict]], tolerance: float) -> None:
    print(f"\n{model}: mean ± sd over {len(runs)} seeds")
    header = "round  remaining  ticket acc         control acc        ticket epoch  control epoch"
    print(header)
    for index in range(len(runs[0])):
        rows = [run[index] for run in runs]
        ctrl = [r["control"] for r in rows if r["control"]]
        print(
            f"{index:5d}  {rows[0]['remaining']:8.1%}  "
            f"{spread(r['ticket']['test_accuracy'] for r in rows):17s}  "
            f"{spread(c['test_accuracy'] for c in ctrl) if ctrl else '-':17s}  "
            f"{spread(r['ticket']['best_epoch'] for r in rows):12s}  "
            f"{spread(c['best_epoch'] for c in ctrl) if ctrl else '-'}"
        )
    at = min(range(1, len(runs[0])), key=lambda i: abs(runs[0][i]["remaining"] - 0.15))
    dense = [run[0]["ticket"] for run in runs]
    ticket = [run[at]["ticket"] for run in runs]
    control = [run[at]["control"] for run in runs]
    gap = [t["test_accuracy"] - d["test_accuracy"] for t, d in zip(ticket, dense, strict=True)]
    edge = [t["test_accuracy"] - c["test_accuracy"] for t, c in zip(ticket, control, strict=True)]
    faster = [t["best_epoch"] <= d["best_epoch"] for t, d in zip(ticket, dense, strict=True)]
    print(
        f"at {runs[0][at]['remaining']:.1%} remaining (round {at}): ticket - dense accuracy "
        f"{spread(gap)} (matches within {tolerance}: {all(g >= -tolerance for g in gap)}); "
        f"ticket - re-initialised {spread(edge)}; ticket stops no later than dense in "
        f"{sum(faster)}/{len(faster)} seeds"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1.2e-3)
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = ingest(DataSpec(source="digits"), Path(".cache/datasets")).path
    splits = [read_split(path, split) for split in ("train", "val", "test")]
    results = {model: run_model(model, args.seeds, args, splits) for model in args.models}
    for model, runs in results.items():
        summarise(model, runs, args.tolerance)


if __name__ == "__main__":
    main()
