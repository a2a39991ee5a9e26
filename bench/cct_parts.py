"""Concept-Centric Transformer vs ProtoPNet on ``parts``: accuracy and concept localisation.

On ``parts`` the concepts are known by construction (each image's coloured parts, with masks).
Per seed this trains, on the same split:

* ``protopnet`` (``backbone_pools=2``, 8x8 latent grid) with the project's fit loop (its
  warm-up / joint / push / last-layer stages);
* ``cct`` unsupervised (CE only, the product's ``model=cct``);
* ``cct`` with concept supervision: the explanation loss against the part masks
  (:func:`components.models.cct.mask_concept_targets`: concept ``k`` is part ``k + 1``).

Both CCTs train with a plain AdamW loop (the reference's optimiser; the fit loop has no way to
hand masks to a loss), same epochs, batch size 64, lr 1e-3, weight decay 1e-3.

Localisation is the pointing game on the unit maps (CCT: per-concept attention maps; ProtoPNet:
prototype similarity maps), upsampled bilinearly to the image
(:func:`components.evaluation.prototype_quality.activated_parts` with ``half_size=0``): for
each part, the unit whose arg-max lands on that part most often over the validation images that
contain it is chosen, and its hit rate on the test images that contain the part is reported,
averaged over the parts. ``chance`` is a uniformly random pixel's hit rate (mean part area).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/cct_parts.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from components.data.ingest import ingest
from components.data.parts import present_parts
from components.data.reader import load_meta, read_masks, read_split
from components.data.spec import DataSpec
from components.evaluation.predict import predict_logits
from components.evaluation.prototype_quality import activated_parts
from components.models.cct import mask_concept_targets
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.optim import build_optimizer


class ConceptMaps(nn.Module):
    """A CCT seen through the ``activation_maps`` interface the pointing game reads."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def activation_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.concept_attention(x)


def train_protopnet(splits, *, epochs: int, seed: int) -> nn.Module:
    (x, y), (vx, vy) = splits["train"][:2], splits["val"][:2]
    spec = ModelSpec("protopnet", tuple(x.shape[1:]), 4, kwargs={"backbone_pools": 2})
    torch.manual_seed(seed)
    model = spec.build()
    cfg = TrainConfig(epochs=epochs, lr=3e-3, batch_size=64, seed=seed, early_stopping_patience=0)
    fit(
        model,
        ShardBatches(x, y, batch_size=64, shuffle=True, seed=seed),
        ShardBatches(vx, vy, batch_size=512, shuffle=False),
        cfg=cfg,
        spec=spec,
        report=lambda *_: None,
    )
    return model.eval()


def train_cct(splits, *, epochs: int, seed: int, supervised: bool) -> nn.Module:
    x, y, masks = splits["train"]
    spec = ModelSpec("cct", tuple(x.shape[1:]), 4)
    torch.manual_seed(seed)
    model = spec.build()
    cfg = TrainConfig(epochs=epochs, lr=1e-3, weight_decay=1e-3, optimizer="adamw", seed=seed)
    opt = build_optimizer(model, cfg)
    targets = mask_concept_targets(torch.as_tensor(masks), model.grid, model.config.num_concepts)
    batches = ShardBatches(x, y, batch_size=64, shuffle=True, seed=seed, with_ids=True)
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        model.train()
        for bx, by, ids in batches:
            with model.concept_targets(targets[ids]) if supervised else nullcontext():
                terms = model.loss(model(bx), bx, by)
            opt.zero_grad()
            terms["total"].backward()
            opt.step()
    return model.eval()


def localisation(model: nn.Module, splits, num_parts: int) -> float:
    """Mean over parts of the test pointing-game hit rate of the unit chosen on validation."""
    maps = model if hasattr(model, "activation_maps") else None
    maps = maps or ConceptMaps(model)

    def hits(split):
        x, _, masks = splits[split]
        hit = activated_parts(maps, x, masks, half_size=0, num_parts=num_parts)
        return hit, present_parts(masks, num_parts)

    (val_hit, val_present), (test_hit, test_present) = hits("val"), hits("test")
    rates = []
    for k in range(num_parts):
        unit = val_hit[val_present[:, k], :, k].mean(axis=0).argmax()
        rates.append(test_hit[test_present[:, k], unit, k].mean())
    return float(np.mean(rates))


def chance(masks: np.ndarray, num_parts: int) -> float:
    """A uniformly random pixel's pointing-game hit rate, averaged over parts."""
    present = present_parts(masks, num_parts)
    area = [(masks[present[:, k]] == k + 1).mean() for k in range(num_parts)]
    return float(np.mean(area))


def accuracy(model: nn.Module, splits) -> float:
    x, y, _ = splits["test"]
    logits = predict_logits(model, torch.as_tensor(x))
    return float((logits.argmax(1) == torch.as_tensor(y)).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--images", type=int, default=1200, help="parts images ingested")
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = DataSpec(source="parts", num_samples=args.images, num_classes=4)
        path = ingest(spec, Path(tmp)).path
        num_parts = len(load_meta(path).raw["parts"])
        splits = {s: (*read_split(path, s), read_masks(path, s)) for s in ("train", "val", "test")}
        for seed in args.seeds:
            trained = {
                "protopnet": lambda s=seed: train_protopnet(splits, epochs=args.epochs, seed=s),
                "cct": lambda s=seed: train_cct(
                    splits, epochs=args.epochs, seed=s, supervised=False
                ),
                "cct + part supervision": lambda s=seed: train_cct(
                    splits, epochs=args.epochs, seed=s, supervised=True
                ),
            }
            for name, build in trained.items():
                start = time.perf_counter()
                model = build()
                row = rows.setdefault(name, {"acc": [], "loc": [], "s": []})
                row["acc"].append(accuracy(model, splits))
                row["loc"].append(localisation(model, splits, num_parts))
                row["s"].append(time.perf_counter() - start)
                print(f"seed {seed} {name}: acc {row['acc'][-1]:.3f} loc {row['loc'][-1]:.3f}")
        base = chance(splits["test"][2], num_parts)
    print(
        f"\nparts 4 classes, {args.images} images, {num_parts} parts, {args.epochs} epochs, "
        f"seeds {args.seeds}; mean +- std over seeds"
    )
    print(f"{'model':<24} {'test acc':>15} {'pointing game':>15} {'train+eval s':>13}")
    for name, row in rows.items():
        cells = [_spread(row["acc"]), _spread(row["loc"]), f"{statistics.mean(row['s']):.0f}"]
        print(f"{name:<24} {cells[0]:>15} {cells[1]:>15} {cells[2]:>13}")
    print(f"{'chance (random pixel)':<24} {'':>15} {base:>15.3f}")


def _spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {std:.3f}"


if __name__ == "__main__":
    main()
