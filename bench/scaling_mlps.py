"""Scaled MLPs vs the CNN: compute against test accuracy, with and without augmentation.

"Scaling MLPs: A Tale of Inductive Bias" (Bachmann et al., NeurIPS 2023) observes that
inverted-bottleneck MLPs improve steadily with compute, and that data augmentation (random
crops, flips, MixUp) matters far more for the MLP, which has no inductive bias to fall back on,
than for a convolutional network. For every seed this trains, with the project's fit loop
(:func:`components.training.fit.fit`, in-process, the code a Ray worker runs), three
``mlp_scaled`` sizes (``--sizes``: width x depth, expansion 4) and ``cnn`` (``--cnn-channels``),
each twice at equal epochs, AdamW and label smoothing 0.3:

* ``plain``: no augmentation;
* ``aug``: ``data.augment=light`` (random resized crop 60-100% of the area, horizontal flip:
  :func:`components.data.image_transforms.tensor_augmentation`, as a worker applies it to array
  images) and ``train.mixup=0.8`` (one Beta(0.8, 0.8) lambda per batch).

Compute is training FLOPs: ``3 x`` the forward FLOPs of one sample (torch's ``FlopCounterMode``;
a multiply-add counts 2; backward taken as twice the forward, as the paper's
``utils/get_compute.py``) ``x`` samples seen (epochs x train rows). Test accuracy is the final
network's. Prints mean ± std over seeds and the paired augmentation gain (aug - plain) per
model, and saves the compute-vs-accuracy plot (``--out``) and the results beside it (``.json``,
rewritten after every model); ``--merge`` plots an earlier run's results beside this one's, so
the models can be trained in separate runs (``--sizes`` with no size: the CNN only).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/scaling_mlps.py --data digits
    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/scaling_mlps.py --data parts
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from bench_datasets import DATASETS, load_splits, num_classes
from torch.utils.flop_counter import FlopCounterMode

from components.data.image_transforms import tensor_augmentation
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit

REGIMES = ("plain", "aug")


def forward_flops(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one sample."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.eval()(torch.zeros(1, *shape))
    return counter.get_total_flops()


def run(splits, model: str, params: dict, regime: str, args, seed: int) -> dict[str, float]:
    """Train one network; its test accuracy and training FLOPs."""
    (x, y), (vx, vy), (tx, ty) = splits
    x, vx = torch.as_tensor(x), torch.as_tensor(vx)
    shape = tuple(x.shape[1:])
    spec = ModelSpec(model, shape, num_classes(splits), kwargs=params)
    torch.manual_seed(seed)
    net = spec.build()
    augment = "light" if regime == "aug" else "none"
    train = ShardBatches(
        x,
        y,
        batch_size=args.batch_size,
        shuffle=True,
        seed=seed,
        transform=tensor_augmentation(shape[1:], augment),
    )
    val = ShardBatches(vx, vy, batch_size=512, shuffle=False)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer="adamw",
        weight_decay=1e-4,
        early_stopping_patience=0,
        seed=seed,
        label_smoothing=0.3,
        mixup=0.8 if regime == "aug" else 0.0,
    )
    fit(net, train, val, cfg=cfg, spec=spec, report=lambda *_: None)
    with torch.no_grad():
        pred = net.eval()(torch.as_tensor(tx)).logits.argmax(1).numpy()
    return {
        "accuracy": float((pred == ty).mean()),
        "flops": 3 * forward_flops(net, shape) * args.epochs * len(y),
        "params": sum(p.numel() for p in net.parameters()),
    }


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def models(sizes: list[str], cnn_channels: list[int]) -> dict[str, tuple[str, dict]]:
    """Label -> (registry name, params): the MLP sizes (``WxD``) and the CNN."""
    out = {}
    for size in sizes:
        width, depth = (int(n) for n in size.split("x"))
        out[f"mlp_scaled {size}"] = ("mlp_scaled", {"width": width, "depth": depth})
    out["cnn"] = ("cnn", {"channels": tuple(cnn_channels)})
    return out


def row(label: str, by_regime: dict, seconds: float) -> str:
    """One table line: size, compute, accuracy per regime and the paired augmentation gain."""
    plain, aug = by_regime["plain"]["accuracy"], by_regime["aug"]["accuracy"]
    gain = [b - a for a, b in zip(plain, aug, strict=True)]
    return (
        f"{label:<20}{by_regime['plain']['params'][0]:>10,}"
        f"{by_regime['plain']['flops'][0]:>13.2e}"
        f"{spread(plain):>16}{spread(aug):>16}{spread(gain):>16}{seconds:>7.0f}"
    )


def plot(results: dict, data: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for regime, style in zip(REGIMES, ("o--", "s-"), strict=True):
        labels = [label for label in results if label.startswith("mlp_scaled")]
        flops = [results[label][regime]["flops"][0] for label in labels]
        accs = [statistics.mean(results[label][regime]["accuracy"]) for label in labels]
        sds = [statistics.pstdev(results[label][regime]["accuracy"]) for label in labels]
        ax.errorbar(flops, accs, yerr=sds, fmt=style, capsize=3, label=f"mlp_scaled, {regime}")
        if "cnn" not in results:
            continue
        cnn = results["cnn"][regime]
        ax.errorbar(
            cnn["flops"][0],
            statistics.mean(cnn["accuracy"]),
            yerr=statistics.pstdev(cnn["accuracy"]),
            fmt="*" if regime == "aug" else "x",
            markersize=12,
            capsize=3,
            label=f"cnn, {regime}",
        )
    ax.set(xscale="log", xlabel="training FLOPs", ylabel="test accuracy", title=data)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"plot: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", choices=sorted(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", nargs="*", default=["32x1", "64x2", "128x4"])
    parser.add_argument("--cnn-channels", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default=None, help="plot (default runs/bench/scaling_mlps_<data>)")
    parser.add_argument(
        "--merge", nargs="*", default=[], help="results JSON of earlier runs to plot beside"
    )
    args = parser.parse_args()
    out = args.out or f"runs/bench/scaling_mlps_{args.data}.png"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    splits = load_splits(args.data)
    print(
        f"{args.data}: {len(splits[0][1])} train / {len(splits[2][1])} test, {args.epochs} "
        f"epochs, AdamW lr {args.lr}, batch {args.batch_size}, cosine, label smoothing 0.3, "
        f"seeds {args.seeds}; aug = crop + flip + MixUp 0.8"
    )
    print(f"\n{'model':<20}{'params':>10}{'train FLOPs':>13}{'plain':>16}{'aug':>16}", end="")
    print(f"{'gain':>16}{'s':>7}", flush=True)
    results: dict = {}
    for label, (name, params) in models(args.sizes, args.cnn_channels).items():
        start = time.perf_counter()
        results[label] = {regime: {} for regime in REGIMES}
        for seed in args.seeds:
            for regime in REGIMES:
                for key, value in run(splits, name, params, regime, args, seed).items():
                    results[label][regime].setdefault(key, []).append(value)
        print(row(label, results[label], time.perf_counter() - start), flush=True)
        Path(out).with_suffix(".json").write_text(json.dumps(results))  # kept if killed later
    for earlier in args.merge:
        results = json.loads(Path(earlier).read_text()) | results
    plot(results, args.data, out)


if __name__ == "__main__":
    main()
