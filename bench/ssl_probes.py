"""Self-supervised pre-training on digits: linear-probe accuracy vs Barlow Twins' projector
width, and DirectPred vs a trained linear predictor at equal epochs (issue 17 item 3).

Each run pre-trains the conv trunk of ``cnn`` (channels 32, 64: a 256-d embedding) or the
encoder of ``proto_ae`` (sigmoid convs 32, 10: a 40-d latent) in-process
(:func:`components.ssl.learner.pretrain_encoder`, the loop the Ray Train workers run) on the
ingested digits training split without labels, then fits the probes on the frozen embeddings
of the training split (the linear probe also on its first 100 rows only: the untrained cnn trunk
already probes at 0.98 with all labels) and scores them on the test split. The untrained
encoder is the baseline every row is read against. Seeds vary initialisation, batches, views.

    nice -n 10 .venv/bin/python bench/ssl_probes.py --epochs 15 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.ssl.config import SSLConfig
from components.ssl.learner import build_learner, pretrain_encoder
from components.ssl.probes import probe_accuracies

FEW = 100  # labelled rows of the few-label linear probe
COLUMNS = ("linear_probe", "linear_probe_few", "knn_probe", "projection_rank")
HEADS = ("linear, all labels", f"linear, {FEW} labels", "k-NN, all labels", "proj. rank")


def digits() -> tuple:
    path = ingest(DataSpec(source="digits"), ".cache/datasets").path
    return read_split(path, "train"), read_split(path, "test")


def run(model: str, cfg: SSLConfig, train, test, untrained: bool) -> dict:
    (x, y), (xt, yt) = train, test
    if untrained:
        _, net = build_learner(model, tuple(x.shape[1:]), cfg, num_classes=10)
        embedder, history = net.embedder, [{}]
    else:
        result = pretrain_encoder(model, x, cfg, num_classes=10)
        embedder, history = result.embedder, result.history
    full = probe_accuracies(embedder, x, y, xt, yt, seed=cfg.seed)
    few = probe_accuracies(embedder, x[:FEW], y[:FEW], xt, yt, seed=cfg.seed)
    return {
        "linear_probe": full["linear_probe"],
        "linear_probe_few": few["linear_probe"],
        "knn_probe": full["knn_probe"],
        "projection_rank": history[-1].get("projection_rank", float("nan")),
    }


def summarise(label: str, rows: list[dict], seconds: float) -> None:
    cells = []
    for key in COLUMNS:
        values = np.array([r[key] for r in rows])
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        cells.append(f"{values.mean():8.4f} ± {spread:.4f}")
    print(f"{label:<40}" + "  ".join(cells) + f"  {seconds / len(rows):6.1f} s/run", flush=True)


def compare(model: str, args, train, test) -> None:
    print(
        f"\ndigits: {len(train[1])} train / {len(test[1])} test rows; model {model}; "
        f"{args.epochs} epochs, batch 64, seeds {args.seeds}"
    )
    print(f"{'run':<40}" + "  ".join(f"{h:>17}" for h in HEADS))
    setups = [("untrained encoder", {})]
    setups += [
        (f"barlow_twins width {w}", {"objective": "barlow_twins", "projector_width": w})
        for w in args.widths
    ]
    setups += [
        ("directpred (direct predictor)", {"objective": "directpred", "predictor": "direct"}),
        (
            "directpred, trained linear predictor",
            {"objective": "directpred", "predictor": "linear"},
        ),
    ]
    for label, overrides in setups:
        start = time.perf_counter()
        rows = [
            run(
                model,
                SSLConfig(**{"epochs": args.epochs, "seed": seed, **overrides}),
                train,
                test,
                untrained=not overrides,
            )
            for seed in args.seeds
        ]
        summarise(label, rows, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "proto_ae"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = digits()
    for model in args.models:
        compare(model, args, train, test)


if __name__ == "__main__":
    main()
