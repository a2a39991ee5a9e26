"""X-NeSyL SHAP-Backprop on ``parts``: with and without, side by side over seeds.

The paper (Díaz-Rodríguez et al., Information Fusion 2022) claims SHAP-Backprop improves both
explainability (a lower SHAP-GED between the knowledge graph and the graph SHAP induces) and
performance on MonuMAI. Here the same network and seed trains twice on ``parts`` (the graph is
known by construction: ``train.xnesyl.graph=auto``), once plain and once with SHAP-Backprop,
through the pure fit loop (no Ray: the bench measures the method, not the cluster), and each
run is scored on the test split: accuracy, SHAP-GED (mean over test images, exact part
Shapley values), the share of test images whose SHAP contradicts the graph, and ProtoPNet's
prototype consistency against the part masks (Huang et al., ICCV 2023). Prints per-seed
figures, then mean +- std and the paired difference.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/xnesyl.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from components.data.ingest import ingest
from components.data.reader import load_meta, read_masks, read_split
from components.data.spec import DataSpec
from components.evaluation.prototype_quality import consistency_score
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.xnesyl import XNeSyLWeights, misattribution
from components.training.xnesyl_graph import KnowledgeGraph, shap_ged
from components.training.xnesyl_shap import part_shapley

FIGURES = ("accuracy", "shap_ged", "misattributed", "consistency", "train_s")


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        spec = DataSpec(source="parts", num_samples=args.samples, num_classes=4)
        path = ingest(spec, tmp).path
        data = _load(path)
        rows = {"plain": [], "shap-backprop": []}
        for seed in args.seeds:
            for regime in rows:
                figures = _run(data, args, seed, enabled=regime != "plain")
                rows[regime].append(figures)
                print(f"seed {seed} {regime:>13}: " + _line(figures), flush=True)
    print(
        f"\n{args.model}, {args.epochs} epochs, {args.samples} parts images, seeds {args.seeds}, "
        f"{args.explained or 'all'} samples per batch explained"
    )
    for regime, runs in rows.items():
        print(f"{regime:>13}: " + ", ".join(_spread(name, runs) for name in FIGURES))
    diffs = [
        {k: on[k] - off[k] for k in FIGURES}
        for off, on in zip(rows["plain"], rows["shap-backprop"], strict=True)
    ]
    print(f"{'paired diff':>13}: " + ", ".join(_spread(name, diffs) for name in FIGURES))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--model", default="protopnet")
    parser.add_argument("--weighting", default="exponential")
    parser.add_argument("--h", type=float, default=1.0)
    parser.add_argument("--explained", type=int, default=16, help="train.xnesyl.samples")
    return parser.parse_args()


def _load(path) -> dict:
    meta = load_meta(path)
    data = {split: read_split(path, split) for split in ("train", "val", "test")}
    return {
        "meta": meta,
        "graph": KnowledgeGraph.from_meta(meta, "auto"),
        "masks": {split: read_masks(path, split) for split in ("train", "test")},
        **data,
    }


def _run(data: dict, args, seed: int, *, enabled: bool) -> dict:
    meta, (x, y), (vx, vy) = data["meta"], data["train"], data["val"]
    kwargs = {"backbone_pools": 2, "prototypes_per_class": 2} if args.model == "protopnet" else {}
    spec = ModelSpec(args.model, tuple(meta.feature_shape), meta.num_classes, kwargs=kwargs)
    xnesyl = {"enabled": enabled, "weighting": args.weighting, "h": args.h,
              "samples": args.explained}  # fmt: skip
    cfg = TrainConfig(
        epochs=args.epochs, lr=3e-3, seed=seed, early_stopping_patience=0, xnesyl=xnesyl
    )
    torch.manual_seed(seed)
    model = spec.build()
    hook = XNeSyLWeights(data["graph"], data["masks"]["train"], cfg.xnesyl) if enabled else None
    started = time.perf_counter()
    fit(
        model,
        ShardBatches(x, y, batch_size=64, shuffle=True, seed=seed * 1000, with_ids=enabled),
        ShardBatches(vx, vy, batch_size=256, shuffle=False),
        cfg=cfg,
        spec=spec,
        report=lambda *_: None,
        sample_weights=hook,
    )
    train_s = time.perf_counter() - started
    return _score(model.eval(), data, cfg) | {"train_s": train_s}


def _score(model, data: dict, cfg: TrainConfig) -> dict:
    tx, ty = (torch.as_tensor(a) for a in data["test"])
    masks, graph = torch.as_tensor(data["masks"]["test"]), data["graph"]
    with torch.no_grad():
        accuracy = float((model(tx).logits.argmax(1) == ty).float().mean())
    shap = torch.cat(
        [
            part_shapley(model, tx[i : i + 64], masks[i : i + 64], len(graph.parts))[0]
            for i in range(0, len(tx), 64)
        ]
    )
    ged = shap_ged(shap, graph.edges, cfg.xnesyl.ged_threshold)
    wrong = misattribution(shap, graph.signs, ty) < 0
    figures = {"accuracy": accuracy, "shap_ged": float(ged.mean()), "misattributed": float(
        wrong.float().mean())}  # fmt: skip
    figures["consistency"] = float("nan")
    if hasattr(model, "activation_maps"):
        score = consistency_score(model, tx, masks.numpy(), ty, part_names=graph.parts)
        figures["consistency"] = score["score"]
    return figures


def _line(figures: dict) -> str:
    return ", ".join(f"{name} {figures[name]:.3f}" for name in FIGURES)


def _spread(name: str, runs: list[dict]) -> str:
    values = [run[name] for run in runs]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{name} {statistics.mean(values):.3f} +- {spread:.3f}"


if __name__ == "__main__":
    main()
