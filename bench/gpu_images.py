"""The image half of the GPU check (``bench/gpu_check.py --images N``): ProtoPNet on a ResNet-18
trunk over a generated image folder, through the pipeline and through a plain torch loop.

Both sides use the same model, batch size, transforms (``light`` augmentation), bf16 autocast,
channels-last layout, pinned memory and number of decoding processes; the pipeline's images
are ingested into Parquet and decoded in the Ray Train worker's DataLoader processes, the plain
loop reads the JPEG files through ``torchvision.datasets.ImageFolder``.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch

MODEL_PARAMS = {"backbone": "resnet18"}


class GpuBusy:
    """Samples ``nvidia-smi``'s utilisation every 100 ms while the block runs."""

    def __enter__(self) -> GpuBusy:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            out = subprocess.run(query, capture_output=True, text=True, check=False).stdout
            if out.strip():
                self.samples.append(float(out.split()[0]))
            time.sleep(0.1)

    @property
    def share(self) -> float:
        """Mean utilisation in percent over the samples (0 without any)."""
        return statistics.fmean(self.samples) if self.samples else 0.0


def image_check(args) -> None:
    """Generate, ingest, train both ways and print the side-by-side table."""
    from components.data.parts_folder import write_parts_folder

    with tempfile.TemporaryDirectory(prefix="sennflow-gpu-images-") as tmp:
        folder = write_parts_folder(
            Path(tmp) / "images",
            num_samples=args.images,
            size=args.size,
            formats=("jpeg",),
            workers=max(1, args.decode_workers),
        )
        with GpuBusy() as busy_pipeline:
            pipeline = _pipeline(folder, Path(tmp), args)
        with GpuBusy() as busy_plain:
            plain = _plain(folder, args)
    last = pipeline["history"][-1]
    checks = {
        "model on GPU": last["model_device"].startswith("cuda"),
        "batches on GPU": last["batch_device"].startswith("cuda"),
        "bf16 autocast": last["autocast"] == "bfloat16",
    }
    print(
        f"\nProtoPNet + ResNet-18 at {args.size}x{args.size}, {args.images} JPEGs, batch "
        f"{args.batch_size}, {args.epochs} epochs, {args.decode_workers} decoding processes"
    )
    for name, ok in checks.items():
        print(f"  {name:<16} {'ok' if ok else 'FAILED'}")
    rows = [
        ("", "pipeline", "plain torch"),
        ("images/s (median, epochs 2+)", f"{pipeline['rate']:,.0f}", f"{plain['rate']:,.0f}"),
        ("GPU busy share (%)", f"{busy_pipeline.share:.0f}", f"{busy_plain.share:.0f}"),
        ("peak GPU memory (MiB)", f"{last['gpu_max_memory_mb']:,.0f}", f"{plain['mib']:,.0f}"),
    ]
    for name, ours, theirs in rows:
        print(f"  {name:<30}{ours:>12}{theirs:>14}")
    print(f"  ratio pipeline / plain: {pipeline['rate'] / plain['rate']:.3f}")
    if not all(checks.values()):
        raise SystemExit("gpu_check: FAILED")


def _pipeline(folder: Path, tmp: Path, args) -> dict:
    from components.data.ingest import ingest
    from components.data.spec import DataSpec
    from components.training.checkpoint import ModelSpec
    from components.training.config import TrainConfig
    from components.training.ray_runtime import ensure_ray
    from components.training.ray_trainer import train_with_ray

    dataset = ingest(
        DataSpec(source="image_folder", path=str(folder), image_size=args.size), tmp / "cache"
    )
    spec = ModelSpec(
        "protopnet", (3, args.size, args.size), dataset.meta["num_classes"], kwargs=MODEL_PARAMS
    )
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        use_gpu=True,
        precision="bf16",
        early_stopping_patience=0,
        cpus_per_worker=2,
        decode_workers=args.decode_workers,
    )
    ensure_ray()
    outcome = train_with_ray(
        dataset_path=dataset.path, spec=spec, cfg=cfg, run_dir=tmp / "run", augment="light"
    )
    rates = [h["samples_per_s"] for h in outcome.history[1:]] or [0.0]
    return {"history": outcome.history, "rate": statistics.median(rates)}


def _plain(folder: Path, args) -> dict:
    from bench.image_train_overhead import plain_loader
    from components.models import create_model

    device = torch.device("cuda")
    loader = plain_loader(folder, args.size, args.batch_size, args.decode_workers, True)
    torch.manual_seed(0)
    model = create_model(
        "protopnet", input_shape=(3, args.size, args.size), num_classes=4, **MODEL_PARAMS
    )
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.cuda.reset_peak_memory_stats(device)
    rates = []
    for _ in range(args.epochs):
        model.train()
        seen, start = 0, time.perf_counter()
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model.loss(model(x), x, y)["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(x)
        torch.cuda.synchronize(device)
        rates.append(seen / (time.perf_counter() - start))
    mib = torch.cuda.max_memory_allocated(device) / 2**20
    return {"rate": statistics.median(rates[1:] or rates), "mib": mib}
