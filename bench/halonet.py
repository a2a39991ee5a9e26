"""HaloNet trunks (issue 19 item 2): accuracy per parameter on ``parts``, and the memory and
speed of blocked local self-attention against naive global attention.

``accuracy``: the black-box baseline (``model=resnet``: trunk -> global average pool -> linear)
with each trunk (``halonet_tiny``, ``halonet_small``, the from-scratch ``conv`` trunk with
``backbone_pools=2`` and ``resnet18``), trained in-process with the project's fit loop on
``parts`` (4 classes, 32x32; ``--image-folder``: the same images written as PNG files and
ingested as an image folder) for each seed; prints trunk parameters and test accuracy (mean +-
std over seeds).

``attention``: one :class:`~components.models.halonet.HaloAttention` layer (64 channels, 4 heads,
b = 8, h = 3, the paper's H0 block and halo) on a ``side x side`` feature map, forward and
backward of a batch of 2, as ``blocked`` and as naive ``global`` attention over every pixel. Each
measurement runs in a fresh subprocess; memory is the peak resident set size above the
process's RSS before the first step (``ru_maxrss``), time the median of 3 steps.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/halonet.py attention --sides 16 32 64
    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/halonet.py accuracy --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TRUNKS = {
    "halonet_tiny": {"backbone": "halonet_tiny"},
    "halonet_small": {"backbone": "halonet_small"},
    "conv": {"backbone": "conv", "backbone_channels": [32, 64, 64], "backbone_pools": 2},
    "resnet18": {"backbone": "resnet18"},
}


def measure_attention(side: int, implementation: str, batch: int = 2) -> dict:
    """Peak RSS growth (MiB) and median step time (s) of one attention layer, forward and
    backward, in this process (call it in a fresh one)."""
    from components.models.halonet import HaloAttention

    torch.manual_seed(0)
    layer = HaloAttention(64, heads=4, block_size=8, halo_size=3)
    layer.implementation = implementation
    x = torch.randn(batch, 64, side, side, requires_grad=True)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(3):
        start = time.perf_counter()
        layer(x).square().mean().backward()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mib": (peak - base) / 1024, "seconds": statistics.median(times)}


def attention(args) -> None:
    print("one HaloAttention layer, 64 channels, 4 heads, b=8 h=3, batch 2, fwd+bwd")
    print(f"{'map':>8} {'blocked MiB':>12} {'global MiB':>11} {'ratio':>7}"
          f" {'blocked s':>10} {'global s':>9} {'ratio':>7}")  # fmt: skip
    for side in args.sides:
        runs = {}
        for impl in ("blocked", "global"):
            code = (
                "import json, bench.halonet as b; "
                f"print(json.dumps(b.measure_attention({side}, {impl!r})))"
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            runs[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        blocked, naive = runs["blocked"], runs["global"]
        print(
            f"{side:>4}x{side:<3} {blocked['mib']:12.1f} {naive['mib']:11.1f} "
            f"{naive['mib'] / max(blocked['mib'], 0.1):6.1f}x {blocked['seconds']:10.3f} "
            f"{naive['seconds']:9.3f} {naive['seconds'] / blocked['seconds']:6.1f}x",
            flush=True,
        )


def accuracy(args) -> None:
    from components.data.ingest import ingest
    from components.data.parts_folder import write_parts_folder
    from components.data.reader import read_split
    from components.data.spec import DataSpec
    from components.evaluation import metrics
    from components.evaluation.predict import predict_logits
    from components.training.batches import ShardBatches
    from components.training.checkpoint import ModelSpec
    from components.training.config import TrainConfig
    from components.training.fit import fit

    results: dict[str, list[float]] = {name: [] for name in args.trunks}
    params, seconds = {}, {name: [] for name in args.trunks}
    with tempfile.TemporaryDirectory() as tmp:
        if args.image_folder:
            folder = write_parts_folder(Path(tmp) / "images", num_samples=args.images, size=32)
            spec = DataSpec(source="image_folder", path=str(folder), image_size=32)
        else:
            spec = DataSpec(
                source="parts", num_samples=args.images, num_classes=4, feature_shape=(3, 32, 32)
            )
        dataset = ingest(spec, Path(tmp) / "data").path
        (x, y), (vx, vy), (tx, ty) = (read_split(dataset, s) for s in ("train", "val", "test"))
        classes = int(y.max()) + 1
        for seed in args.seeds:
            for name in args.trunks:
                torch.manual_seed(seed)
                model_spec = ModelSpec("resnet", tuple(x.shape[1:]), classes, kwargs=TRUNKS[name])
                model = model_spec.build()
                params[name] = sum(p.numel() for p in model.features.parameters())
                cfg = TrainConfig(
                    epochs=args.epochs,
                    lr=args.lr,
                    batch_size=64,
                    seed=seed,
                    early_stopping_patience=0,
                )
                start = time.perf_counter()
                fit(
                    model,
                    ShardBatches(x, y, batch_size=64, shuffle=True, seed=seed),
                    ShardBatches(vx, vy, batch_size=512, shuffle=False),
                    cfg=cfg,
                    spec=model_spec,
                    report=lambda *_: None,
                )
                seconds[name].append(time.perf_counter() - start)
                results[name].append(metrics.accuracy(predict_logits(model.eval(), tx), ty))
                print(f"  {name} seed {seed}: {results[name][-1]:.3f} "
                      f"({seconds[name][-1]:.0f} s)", flush=True)  # fmt: skip
    source = "image folder" if args.image_folder else "parts source"
    print(f"\nmodel=resnet on parts ({source}), {args.images} images, {args.epochs} epochs, "
          f"lr {args.lr}, seeds {args.seeds}; mean +- std over seeds")  # fmt: skip
    print(f"{'trunk':14} {'params':>10} {'test accuracy':>16} {'train s':>8}")
    for name, accs in results.items():
        print(f"{name:14} {params[name]:10,d} {spread(accs):>16} "
              f"{statistics.mean(seconds[name]):8.0f}")  # fmt: skip


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} +- {statistics.pstdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    att = sub.add_parser("attention")
    att.add_argument("--sides", type=int, nargs="+", default=[16, 32, 64])
    acc = sub.add_parser("accuracy")
    acc.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    acc.add_argument("--epochs", type=int, default=6)
    acc.add_argument("--lr", type=float, default=3e-3)
    acc.add_argument("--images", type=int, default=1200)
    acc.add_argument("--trunks", nargs="+", choices=list(TRUNKS), default=list(TRUNKS))
    acc.add_argument("--image-folder", action="store_true", help="ingest generated PNGs")
    args = parser.parse_args()
    attention(args) if args.part == "attention" else accuracy(args)


if __name__ == "__main__":
    main()
