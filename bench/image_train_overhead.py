"""Training images/s through the pipeline vs a plain torch loop over the same image files.

Both train the black-box ResNet-18 (``model=resnet``, torchvision's architecture) at the same
image size, batch size, CPU threads, number of decoding processes and augmentation
(``light``: random resized crop + flip, torchvision ``transforms.v2``):

* pipeline: the folder is ingested (encoded bytes in Parquet), then trained through
  ``train_with_ray`` (Ray Train worker, :class:`ImageBatches` decoding in the worker's
  DataLoader processes);
* plain: ``torchvision.datasets.ImageFolder`` + ``DataLoader`` over the same files, the model,
  Adam and cross-entropy in a loop in this process.

Prints the median images/s over the epochs after the first (start-up excluded) and the ratio
pipeline / plain (the target is >= 0.9). The plain loop runs before and after the pipeline and
the ratio uses the mean of both, so a shared machine's drift in load does not favour either.

    python bench/image_train_overhead.py [--images 2000] [--size 64] [--epochs 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def make_folder(root: Path, args) -> Path:
    from components.data.parts_folder import write_parts_folder

    return write_parts_folder(
        root / "images", num_samples=args.images, size=args.size, formats=("jpeg",), workers=2
    )


def pipeline_rate(folder: Path, tmp: Path, args) -> float:
    """Median training images/s of the epochs after the first, through Ray Train."""
    from components.data.ingest import ingest
    from components.data.spec import DataSpec
    from components.training.checkpoint import ModelSpec
    from components.training.config import TrainConfig
    from components.training.ray_runtime import ensure_ray
    from components.training.ray_trainer import train_with_ray

    spec = DataSpec(source="image_folder", path=str(folder), image_size=args.size)
    dataset = ingest(spec, tmp / "cache")
    model = ModelSpec("resnet", (3, args.size, args.size), dataset.meta["num_classes"])
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        early_stopping_patience=0,
        cpus_per_worker=args.threads,
        decode_workers=args.decode_workers,
    )
    ensure_ray(num_cpus=args.threads)
    outcome = train_with_ray(
        dataset_path=dataset.path, spec=model, cfg=cfg, run_dir=tmp / "run", augment="light"
    )
    return statistics.median(h["samples_per_s"] for h in outcome.history[1:])


def plain_loader(folder: Path, size: int, batch_size: int, workers: int, pin_memory: bool = False):
    """What a user would write: ``ImageFolder`` over the files (Pillow decode) with the same
    ``transforms.v2`` training transform as the pipeline, in a shuffling ``DataLoader``."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    from components.data.image_transforms import train_transform

    augment = train_transform(size, [0.5] * 3, [0.25] * 3, "light")
    data = ImageFolder(str(folder), transform=v2.Compose([v2.PILToTensor(), augment]))
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )


def plain_rate(folder: Path, args) -> float:
    """Median images/s of a plain ImageFolder + DataLoader loop, epochs after the first."""
    from components.models import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loader = plain_loader(folder, args.size, args.batch_size, args.decode_workers)
    model = create_model("resnet", input_shape=(3, args.size, args.size), num_classes=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rates = []
    for _ in range(args.epochs):
        model.train()
        seen, start = 0, time.perf_counter()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x).logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(x)
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (Ray CPUs)")
    parser.add_argument("--decode-workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sennflow-bench-") as tmp:
        folder = make_folder(Path(tmp), args)
        before = plain_rate(folder, args)
        pipeline = pipeline_rate(folder, Path(tmp), args)
        after = plain_rate(folder, args)
    plain = (before + after) / 2
    print(
        f"\nResNet-18 at {args.size}x{args.size}, {args.images} JPEGs, batch {args.batch_size}, "
        f"{args.threads} threads, {args.decode_workers} decoding processes, augment light"
    )
    print(f"  plain ImageFolder + DataLoader : {plain:8.1f} images/s ({before:.1f}, {after:.1f})")
    print(f"  pipeline (Ray Train worker)    : {pipeline:8.1f} images/s")
    print(f"  ratio pipeline / plain         : {pipeline / plain:8.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
