"""PS-KD vs plain cross-entropy on digits or parts: test ECE, misclassification AUROC, accuracy.

Kim et al. (ICCV 2021) report that PS-KD improves calibration (ECE) and the ranking of wrong
predictions below right ones by confidence (AUROC of max-softmax for wrong vs right) at equal
or better accuracy. For every seed and model this trains the network twice with the project's
fit loop (:func:`components.training.fit.fit`, in-process, the same code a Ray worker runs), with
the same epochs, optimiser and schedule: once with ``train.self_distill=none`` and once with
``pskd`` (``alpha_T``), and scores the final network on the test split with
:func:`components.evaluation.metrics.expected_calibration_error` (15 bins) and
:func:`components.evaluation.uncertainty.uncertainty_auroc` (score ``1 - max softmax``).
Prints mean ± standard deviation over seeds, and the paired difference (pskd - none); the mean
max-softmax ``confidence`` beside accuracy says whether a network is over- or under-confident
(PS-KD's premise is an over-confident one).
``--data`` picks the dataset (:data:`bench_datasets.DATASETS`: digits, or the 3x32x32 ``parts``
images with 4 classes); the number of classes comes from its labels.

    nice -n 10 .venv/bin/python bench/pskd.py --seeds 0 1 2 3 4 --models mlp proto_ae
    nice -n 10 .venv/bin/python bench/pskd.py --data parts --seeds 0 1 2 --models cnn
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from bench_datasets import DATASETS, load_splits, num_classes

from components.evaluation.metrics import accuracy, expected_calibration_error
from components.evaluation.uncertainty import uncertainty_auroc
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit

METRICS = ("accuracy", "confidence", "ece", "auroc")


def run(splits, model: str, cfg: TrainConfig) -> dict[str, float]:
    """Train ``model`` with ``cfg`` and score the final network on the test split."""
    (x, y), (vx, vy), (tx, ty) = splits
    spec = ModelSpec(model, tuple(x.shape[1:]), num_classes(splits))
    torch.manual_seed(cfg.seed)
    net = spec.build()
    train = ShardBatches(
        x, y, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, with_ids=True
    )
    val = ShardBatches(vx, vy, batch_size=512, shuffle=False)
    fit(net, train, val, cfg=cfg, spec=spec, report=lambda *_: None)
    with torch.no_grad():
        probs = torch.softmax(net.eval()(torch.as_tensor(tx)).logits, dim=1).numpy()
    wrong = probs.argmax(1) != ty
    return {
        "accuracy": accuracy(probs, ty),
        "confidence": float(probs.max(1).mean()),
        "ece": expected_calibration_error(probs, ty),
        "auroc": uncertainty_auroc(1 - probs.max(1), wrong),
    }


def spread(values: list[float]) -> str:
    """Mean ± std of the defined values; AUROC is NaN for a run without a wrong prediction."""
    defined = [v for v in values if not math.isnan(v)]
    if not defined:
        return "n/a"
    sd = statistics.stdev(defined) if len(defined) > 1 else 0.0
    text = f"{statistics.mean(defined):.4f} ± {sd:.4f}"
    return text if len(defined) == len(values) else f"{text} ({len(defined)}/{len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", choices=sorted(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--models", nargs="+", default=["mlp", "proto_ae"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--alpha-T", type=float, default=0.8)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    splits = load_splits(args.data)
    print(
        f"{args.data}: {len(splits[0][1])} train / {len(splits[2][1])} test, {args.epochs} epochs, "
        f"Adam lr {args.lr}, batch 64, cosine, alpha_T {args.alpha_T}, seeds {args.seeds}"
    )
    for model in args.models:
        results: dict[str, dict[str, list[float]]] = {"none": {}, "pskd": {}}
        start = time.perf_counter()
        for seed in args.seeds:
            for regime in results:
                cfg = TrainConfig(
                    epochs=args.epochs,
                    lr=args.lr,
                    early_stopping_patience=0,
                    seed=seed,
                    self_distill=regime,
                    pskd={"alpha_T": args.alpha_T},
                )
                for name, value in run(splits, model, cfg).items():
                    results[regime].setdefault(name, []).append(value)
        print(f"\nmodel={model} ({time.perf_counter() - start:.0f} s)")
        print(f"{'metric':<10}{'none':>20}{'pskd':>20}{'pskd - none':>20}")
        for name in METRICS:
            none, pskd = results["none"][name], results["pskd"][name]
            diff = [b - a for a, b in zip(none, pskd, strict=True)]
            print(f"{name:<10}{spread(none):>20}{spread(pskd):>20}{spread(diff):>20}")


if __name__ == "__main__":
    main()
