"""GPU check: train on CUDA with bf16 autocast through the real Ray Train path.

Asserts that the model and the batches were on the GPU and autocast was on, then prints
samples/s and peak GPU memory. Run on a machine with a CUDA device (``bench/gpu_check.sh``).

``--images N`` checks the image path instead: it generates N ``parts`` images of
``--size`` (default 224) as JPEG files, ingests the folder and trains ProtoPNet on a
torchvision ResNet-18 trunk (channels-last, pinned memory, images decoded and augmented in the
worker's DataLoader processes), then trains the same model with the same transforms in a plain
torch loop over ``torchvision.datasets.ImageFolder`` + ``DataLoader``, and prints images/s,
the share of time the GPU was busy (``nvidia-smi`` sampled every 100 ms) and peak memory of
both side by side.

``--sweep`` checks fractional GPUs instead (``bench/gpu_sweep.py``): a tiny sweep whose trials
each reserve ``--gpu-share`` (0.25) of the GPU, printing how many trials ran on it at once;
``--gpu-share 0`` runs the same sweep on the CPU (no GPU needed).

    python bench/gpu_check.py [--dataset PATH] [--epochs N]
    python bench/gpu_check.py --images 4000 [--size 224] [--decode-workers 12]
    python bench/gpu_check.py --sweep [--gpu-share 0.25] [--trials N] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from components.data.reader import load_meta
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.ray_runtime import ensure_ray
from components.training.ray_trainer import train_with_ray


def dataset_path(given: str | None, tmp: Path) -> Path:
    """The given dataset folder, or digits ingested into ``tmp``."""
    if given:
        return Path(given)
    from components.data.ingest import ingest
    from components.data.spec import DataSpec

    return ingest(DataSpec(source="digits"), tmp).path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="an ingested dataset folder (default: ingest digits)")
    parser.add_argument("--model", default="proto_ae")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=0, help="check the image path instead")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--decode-workers", type=int, default=12)
    parser.add_argument("--sweep", action="store_true", help="check fractional GPUs instead")
    parser.add_argument("--gpu-share", type=float, default=0.25, help="--sweep: GPU per trial")
    parser.add_argument("--trials", type=int, default=0, help="--sweep: trials (0: 1/share)")
    args = parser.parse_args()
    if args.sweep and args.gpu_share == 0:  # the CPU dry run
        from bench.gpu_sweep import sweep_check

        sweep_check(args)
        return
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible to torch")
    if args.images:
        from bench.gpu_images import image_check

        image_check(args)
        return
    if args.sweep:
        from bench.gpu_sweep import sweep_check

        sweep_check(args)
        return

    with tempfile.TemporaryDirectory(prefix="sennflow-gpu-") as tmp:
        path = dataset_path(args.dataset, Path(tmp))
        meta = load_meta(path)
        spec = ModelSpec(args.model, meta.feature_shape, meta.num_classes)
        cfg = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            use_gpu=True,
            precision="bf16",
            early_stopping_patience=0,
        )
        ensure_ray()
        outcome = train_with_ray(dataset_path=path, spec=spec, cfg=cfg, run_dir=Path(tmp) / "run")

    last = outcome.history[-1]
    checks = {
        "model on GPU": last["model_device"].startswith("cuda"),
        "batches on GPU": last["batch_device"].startswith("cuda"),
        "bf16 autocast": last["autocast"] == "bfloat16",
    }
    rates = [h["samples_per_s"] for h in outcome.history[1:]] or [last["samples_per_s"]]
    print(
        f"\ndevice: {torch.cuda.get_device_name(0)}, model {args.model}, "
        f"{meta.row_counts['train']} train rows, batch {args.batch_size}, {args.epochs} epochs"
    )
    for name, ok in checks.items():
        print(
            f"  {name:<16} {'ok' if ok else 'FAILED'}  ({last['model_device']}, "
            f"{last['batch_device']}, autocast {last['autocast']})"
        )
    print(f"  samples/s (median after epoch 1): {statistics.median(rates):,.0f}")
    print(f"  peak GPU memory (worker): {last['gpu_max_memory_mb']:.1f} MiB")
    print(f"  final val accuracy: {last['val_accuracy']:.4f}")
    if not all(checks.values()):
        raise SystemExit("gpu_check: FAILED")


if __name__ == "__main__":
    main()
