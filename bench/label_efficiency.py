"""Label efficiency: proto_ae fine-tuned from an SSL encoder vs from random weights, 10% labels.

Issue 17 item 3's check: with a tenth of the training labels, a prototype model whose encoder was
first pre-trained without labels on the whole train split (:func:`components.ssl.learner.
pretrain_encoder`, Barlow Twins by default) reaches a higher test accuracy than the same model
trained from random initialisation. For every seed both arms train with the project's fit loop
(:func:`components.training.fit.fit`, in-process, the code a Ray worker runs) on the same seeded,
stratified 10% of the labels (:func:`components.training.label_fraction.labelled_rows`, what
``train.label_fraction=0.1`` keeps), with the same epochs, optimiser and schedule; the SSL arm's
pre-training epochs are extra and stated. Prints mean ± standard deviation over seeds and the
paired difference.

    nice -n 10 .venv/bin/python bench/label_efficiency.py --seeds 0 1 2 --datasets digits
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from bench_datasets import DATASETS, load_splits, num_classes

from components.evaluation.metrics import accuracy
from components.ssl.config import SSLConfig
from components.ssl.learner import pretrain_encoder
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.label_fraction import labelled_rows


def finetune(net, splits, cfg: TrainConfig, spec: ModelSpec, rows: np.ndarray) -> float:
    """Train ``net`` on the labelled ``rows`` of the train split; test accuracy of the result."""
    (x, y), (vx, vy), (tx, ty) = splits
    train = ShardBatches(x[rows], y[rows], batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
    val = ShardBatches(vx, vy, batch_size=512, shuffle=False)
    fit(net, train, val, cfg=cfg, spec=spec, report=lambda *_: None)
    with torch.no_grad():
        probs = torch.softmax(net.eval()(torch.as_tensor(tx)).logits, dim=1).numpy()
    return accuracy(probs, ty)


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def bench(name: str, splits, num_classes: int, args) -> None:
    (x, y), _, (_, ty) = splits
    spec = ModelSpec("proto_ae", tuple(x.shape[1:]), num_classes)
    results: dict[str, list[float]] = {"random": [], "ssl": []}
    start = time.perf_counter()
    for seed in args.seeds:
        rows = labelled_rows(y, args.fraction, seed)
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, early_stopping_patience=0, seed=seed)
        torch.manual_seed(seed)
        results["random"].append(finetune(spec.build(), splits, cfg, spec, rows))
        ssl_cfg = SSLConfig(objective=args.objective, epochs=args.ssl_epochs, seed=seed)
        pre = pretrain_encoder("proto_ae", x, ssl_cfg, num_classes=num_classes)
        results["ssl"].append(finetune(pre.model, splits, cfg, spec, rows))
        print(
            f"  {name} seed {seed}: random {results['random'][-1]:.4f}, "
            f"ssl {results['ssl'][-1]:.4f}",
            flush=True,
        )
    diff = [b - a for a, b in zip(results["random"], results["ssl"], strict=True)]
    print(
        f"\n{name}: {len(rows)} of {len(y)} train labels, {len(ty)} test rows, "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(f"{'random init':>20}{'ssl init':>20}{'ssl - random':>20}")
    print(f"{spread(results['random']):>20}{spread(results['ssl']):>20}{spread(diff):>20}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=sorted(DATASETS))
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--objective", default="barlow_twins")
    parser.add_argument("--ssl-epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"proto_ae, {args.fraction:.0%} labels, fine-tune {args.epochs} epochs Adam lr {args.lr} "
        f"batch 64 cosine; SSL {args.objective} {args.ssl_epochs} epochs; seeds {args.seeds}"
    )
    for name in args.datasets:
        splits = load_splits(name)
        bench(name, splits, num_classes(splits), args)


if __name__ == "__main__":
    main()
