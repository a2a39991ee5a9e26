"""Federated prototype averaging on digits with and without a pre-trained SSL embedding.

Issue 17 item 3: ``federated.embedding=<checkpoint>`` makes every client and the server embed with
a self-supervised encoder instead of the untrained model's encoder or the standardised input. For
each seed this pre-trains ``proto_ae``'s encoder on the training split without labels
(:func:`components.ssl.learner.pretrain_encoder`), saves it as an SSL checkpoint folder, and runs
:func:`components.federated.experiment.run_experiment` (Ray client actors, the flow's code) with
the ``prototypes`` strategy three ways: ``mlp`` clients (the standardised input, the default),
``proto_ae`` clients (its untrained encoder) and ``federated.embedding`` (the SSL encoder). Prints
the merged model's final test accuracy, mean ± standard deviation over seeds.

    nice -n 10 .venv/bin/python bench/federated_embedding.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.federated.experiment import FederatedConfig, run_experiment
from components.ssl.config import SSLConfig
from components.ssl.learner import pretrain_encoder
from components.training.checkpoint import ModelSpec
from components.training.ray_runtime import ensure_ray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--objective", default="jepa")
    parser.add_argument("--ssl-epochs", type=int, default=30)
    parser.add_argument("--partition", default="disjoint_classes")
    args = parser.parse_args()
    ensure_ray(num_cpus=2)
    results: dict[str, list[float]] = {"mlp input": [], "proto_ae untrained": [], "ssl": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = ingest(DataSpec(source="digits"), Path(tmp)).path
        x, y = read_split(path, "train")
        tx, ty = read_split(path, "test")
        shape = tuple(x.shape[1:])
        for seed in args.seeds:
            cfg = FederatedConfig(strategies=("prototypes",), partition=args.partition, seed=seed)
            ssl = SSLConfig(objective=args.objective, epochs=args.ssl_epochs, seed=seed)
            folder = pretrain_encoder("proto_ae", x, ssl, num_classes=10).save(
                Path(tmp) / f"ssl{seed}"
            )
            runs = {
                "mlp input": (ModelSpec("mlp", shape, 10), cfg),
                "proto_ae untrained": (ModelSpec("proto_ae", shape, 10), cfg),
                "ssl": (
                    ModelSpec("mlp", shape, 10),
                    dataclasses.replace(cfg, embedding=str(folder)),
                ),
            }
            for name, (spec, config) in runs.items():
                torch.manual_seed(seed)
                report = run_experiment((x, y, tx, ty), spec, config).report
                results[name].append(report["strategies"]["prototypes"]["final_accuracy"])
            print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in results.items()))
    print(
        f"\ndigits, {cfg.num_clients} clients, {args.partition}, {cfg.rounds} rounds; "
        f"SSL {args.objective} {args.ssl_epochs} epochs; seeds {args.seeds}"
    )
    for name, values in results.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:>20}: {statistics.mean(values):.4f} ± {sd:.4f}")


if __name__ == "__main__":
    main()
