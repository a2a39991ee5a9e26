"""Cost of ProtoPNet's push vs one training epoch on the same data (target: push <= 1.5 epochs).

Both run through the project's own code on the same training shard: ``train_epoch`` (forward,
loss, backward, optimiser step over every batch) and ``push_prototypes`` (one no-grad pass over
the same rows that projects every prototype onto its nearest training patch of its class).
Each is timed ``--repeats`` times after a warm-up; the medians are compared.

    python bench/push_cost.py                       # digits, protopnet defaults
    python bench/push_cost.py --data parts --pools 2 --samples 3000
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
from components.models import create_model
from components.models.base import TrainingStage
from components.training.batches import ShardBatches
from components.training.config import TrainConfig
from components.training.optim import build_optimizer
from components.training.push import push_prototypes
from components.training.steps import train_epoch


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits", choices=["digits", "parts"])
    parser.add_argument("--samples", type=int, default=3000, help="parts: images generated")
    parser.add_argument("--pools", type=int, default=1, help="protopnet backbone_pools")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="sennflow-push-") as tmp:
        spec = DataSpec(source=args.data, num_samples=args.samples)
        path = ingest(spec, Path(tmp)).path
        x, y = read_split(path, "train")
    torch.manual_seed(0)
    model = create_model(
        "protopnet",
        input_shape=x.shape[1:],
        num_classes=int(y.max()) + 1,
        backbone_pools=args.pools,
    )
    batches = ShardBatches(x, y, batch_size=args.batch_size, shuffle=True)
    cfg = TrainConfig(batch_size=args.batch_size, lr=3e-3)
    opt = build_optimizer(model, cfg, TrainingStage("joint", 1))
    device = torch.device("cpu")

    epoch_s = timed(lambda: train_epoch(model, batches, opt, cfg, device), args.repeats)
    push_s = timed(lambda: push_prototypes(model, batches.in_order(), device), args.repeats)
    print(
        f"\nprotopnet on {args.data}: {len(x)} training rows, batch {args.batch_size}, "
        f"{args.threads} thread(s), median of {args.repeats}"
    )
    print(f"{'one training epoch':<22}{epoch_s:>10.3f} s")
    print(f"{'push':<22}{push_s:>10.3f} s")
    print(f"ratio push/epoch: {push_s / epoch_s:.3f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
