"""Training overhead of the pipeline path (Ray Train, 1 worker) vs a hand-written torch loop.

Same model, data, batch size, epochs and thread count, side by side in one run. Throughput is
measured at steady state: the median over epochs after the first, so Ray's start-up and the first
epoch's warm-up are not what is measured. The pipeline's per-epoch time includes everything it does
besides the plain loop (validation pass, checkpoint to disk, report to the Ray controller).

    python bench/train_overhead.py                 # 200k synthetic rows x 32 features, 5 epochs
    python bench/train_overhead.py --rows 20000 --epochs 3   # quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from components.data.ingest import ingest
from components.data.reader import load_meta, read_split
from components.data.spec import DataSpec
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.ray_runtime import ensure_ray
from components.training.ray_trainer import train_with_ray


def plain_loop(path: Path, spec: ModelSpec, cfg: TrainConfig) -> list[float]:
    """Samples/s per epoch of the simplest correct torch loop over the same training rows."""
    torch.set_num_threads(cfg.cpus_per_worker)
    x, y = (torch.from_numpy(a) for a in read_split(path, "train"))
    torch.manual_seed(cfg.seed)
    model = spec.build()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rates = []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb, yb = x[idx], y[idx]
            loss = torch.nn.functional.cross_entropy(model(xb).logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rates.append(len(x) / (time.perf_counter() - start))
    return rates


def pipeline_path(path: Path, spec: ModelSpec, cfg: TrainConfig, run_dir: Path) -> list[float]:
    """Samples/s per epoch through Ray Train, counting the whole epoch (train, val, checkpoint)."""
    ensure_ray(num_cpus=2)
    outcome = train_with_ray(dataset_path=path, spec=spec, cfg=cfg, run_dir=run_dir)
    train_rows = load_meta(path).row_counts["train"]
    return [train_rows / h["epoch_time_s"] for h in outcome.history]


def steady(rates: list[float]) -> float:
    """Median throughput without the first (warm-up) epoch."""
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both paths")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sennflow-bench-") as tmp:
        data = DataSpec(
            source="synthetic",
            num_samples=args.rows,
            num_features=args.features,
            num_classes=4,
            val_fraction=0.1,
            test_fraction=0.1,
        )
        path = ingest(data, Path(tmp) / "cache").path
        spec = ModelSpec(name="mlp", input_shape=(args.features,), num_classes=4)
        cfg = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=1e-3,
            early_stopping_patience=0,
            cpus_per_worker=args.threads,
        )
        plain = plain_loop(path, spec, cfg)
        ray_rates = pipeline_path(path, spec, cfg, Path(tmp) / "run")

    p, r = steady(plain), steady(ray_rates)
    print(
        f"\ntraining throughput, {args.rows} rows x {args.features} features, mlp, "
        f"batch {args.batch_size}, {args.epochs} epochs, {args.threads} thread(s)"
    )
    print(f"{'path':<34}{'samples/s (steady)':>20}")
    print(f"{'plain torch loop':<34}{p:>20,.0f}")
    print(f"{'Ray Train (1 worker, full epoch)':<34}{r:>20,.0f}")
    print(f"ratio pipeline/plain: {r / p:.3f}  (target >= 0.8)")
    print("per-epoch plain:", " ".join(f"{v:,.0f}" for v in plain))
    print("per-epoch ray:  ", " ".join(f"{v:,.0f}" for v in ray_rates))


if __name__ == "__main__":
    main()
