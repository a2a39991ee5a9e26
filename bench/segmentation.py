"""Weakly-supervised segmentation from evidence maps on ``parts`` (issue 18 item 4).

The claim of the brain-tumour paper (Chatterjee et al.) as the ``segmentation`` trust check
measures it: a classifier's own class-evidence maps, thresholded, segment the class region
(here the two parts of the image's class) better than Integrated Gradients and better than the
same network untrained. For each seed this trains ProtoPNet (``experiment=parts``: 2-pool conv
backbone, 8x8 latent grid) and the ``cnn`` baseline (CAM) in-process with the project's fit
loop, then runs :func:`components.explain.checks.segmentation.run` on them, the threshold
chosen on validation images and Dice / IoU reported on test images.

Prints per model and map kind the mean and standard deviation over seeds of test Dice (mean
and median over images), IoU and the chosen threshold, then the check's verdicts.
``--image-folder`` writes the parts images as PNG files with their ``masks/``
(:func:`components.data.parts_folder.write_parts_folder`) and ingests that folder instead, so
the check reads masks through the image-folder ingest.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/segmentation.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from components.data.ingest import ingest
from components.data.parts_folder import write_parts_folder
from components.data.reader import load_meta, read_split
from components.data.spec import DataSpec
from components.evaluation import metrics
from components.evaluation.predict import predict_logits
from components.explain.checks import segmentation
from components.explain.checks.runner import CheckContext
from components.explain.config import ExplainConfig
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec, save_checkpoint
from components.training.config import TrainConfig
from components.training.fit import fit

MODELS = {
    "protopnet": {"backbone_pools": 2},
    "cnn": {"channels": [16, 32]},
}


def train(spec: ModelSpec, splits, *, epochs: int, lr: float, seed: int) -> torch.nn.Module:
    """``spec``'s model trained on the train split (validation-driven stopping off)."""
    torch.manual_seed(seed)
    model = spec.build()
    (x, y), (vx, vy) = splits[0], splits[1]
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=64, seed=seed, early_stopping_patience=0)
    fit(
        model,
        ShardBatches(x, y, batch_size=64, shuffle=True, seed=seed),
        ShardBatches(vx, vy, batch_size=512, shuffle=False),
        cfg=cfg,
        spec=spec,
        report=lambda *_: None,
    )
    return model.eval()


def check(model, spec, dataset: Path, folder: Path, seed: int, samples: int) -> dict:
    """The segmentation check's result on ``model`` (its checkpoint written to ``folder``)."""
    save_checkpoint(folder, model, spec, {})
    settings = {"val_samples": samples, "test_samples": samples}
    context = CheckContext(
        model=model,
        checkpoint=folder,
        dataset_path=dataset,
        meta=load_meta(dataset),
        config=ExplainConfig(checks=("segmentation",), segmentation=settings),
        seed=seed,
        settings=settings,
    )
    return segmentation.run(context)


def accuracy(model: torch.nn.Module, dataset: Path) -> float:
    """Test accuracy of ``model`` on the whole test split."""
    x, y = read_split(dataset, "test")
    return metrics.accuracy(predict_logits(model, x), y)


def dataset_of(args, tmp: Path) -> Path:
    """The ingested ``parts`` dataset (generated, or written as an image folder with masks)."""
    if args.image_folder:
        folder = write_parts_folder(tmp / "images", num_samples=args.images, size=32, masks=True)
        spec = DataSpec(source="image_folder", path=str(folder), image_size=32)
    else:
        spec = DataSpec(
            source="parts", num_samples=args.images, num_classes=4, feature_shape=(3, 32, 32)
        )
    return ingest(spec, tmp / "data").path


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} +- {statistics.pstdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--samples", type=int, default=256, help="val and test images each")
    parser.add_argument("--images", type=int, default=1200, help="parts images ingested")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--image-folder", action="store_true", help="ingest PNGs + masks/")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = dataset_of(args, Path(tmp))
        splits = [read_split(dataset, split) for split in ("train", "val")]
        for seed in args.seeds:
            for name in args.models:
                start = time.perf_counter()
                spec = ModelSpec(name, (3, 32, 32), 4, kwargs=MODELS[name])
                model = train(spec, splits, epochs=args.epochs, lr=args.lr, seed=seed)
                folder = Path(tmp) / f"{name}-{seed}"
                result = check(model, spec, dataset, folder, seed, args.samples)
                results[name].append(result | {"accuracy": accuracy(model, dataset)})
                print(f"  {name} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    source = "image folder with masks/" if args.image_folder else "parts source"
    print(f"\nparts 4 classes ({source}), {args.images} images, {args.epochs} epochs, seeds "
          f"{args.seeds}, {args.samples} val / {args.samples} test images; mean +- std over "
          "seeds")  # fmt: skip
    for name, runs in results.items():
        print(f"{name} test accuracy {spread([run['accuracy'] for run in runs])}")
    print(f"{'model':10} {'map':34} {'Dice':>16} {'median Dice':>16} {'IoU':>16} {'thr':>6}")
    for name, runs in results.items():
        for key in runs[0]["kinds"]:
            scores = [run["kinds"][key]["test"] for run in runs]
            print(
                f"{name:10} {runs[0]['kinds'][key]['label']:34} "
                f"{spread([s['dice'] for s in scores]):>16} "
                f"{spread([s['dice_median'] for s in scores]):>16} "
                f"{spread([s['iou'] for s in scores]):>16} "
                f"{statistics.mean(s['threshold'] for s in scores):6.2f}"
            )
    for name, runs in results.items():
        for seed, run in zip(args.seeds, runs, strict=True):
            print(f"{name} seed {seed}: {run['verdict']}")


if __name__ == "__main__":
    main()
