"""BEYOND adversarial detection on digits: detection AUROC against PGD l2 at two budgets and
against the adaptive attack, over seeds (issue 18 item 6).

Per seed: an ``mlp`` trained on digits (15 epochs), a Barlow Twins ``mlp`` encoder trained on
the same training split (20 epochs, the check's default when a run has no SSL stage), then
:func:`components.explain.checks.beyond.evaluation.evaluate_detector` with the check's default
settings (200 test inputs, 50 neighbours, k=20, alpha=0.8, eps 1 and 2, 50 PGD steps).
Prints, per attack, the success rate and the AUROCs (combined score, label consistency alone,
representation similarity alone) as mean +- std over the seeds, side by side in one run.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/beyond.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.explain.checks.beyond.encoder import ssl_model
from components.explain.checks.beyond.evaluation import evaluate_detector
from components.explain.checks.beyond.settings import BeyondSettings
from components.models import create_model
from components.training.checkpoint import ModelSpec

COLUMNS = ("success_rate", "auroc", "auroc_consistency", "auroc_similarity", "detected")


def train_classifier(x: np.ndarray, y: np.ndarray, seed: int, epochs: int) -> torch.nn.Module:
    """A plain cross-entropy ``mlp`` (Adam, lr 1e-3, batch 64)."""
    torch.manual_seed(seed)
    model = create_model("mlp", input_shape=x.shape[1:], num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(epochs):
        order = torch.randperm(len(xs))
        for start in range(0, len(xs), 64):
            batch = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(model(xs[batch]).logits, ys[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def one_seed(path: Path, seed: int, epochs: int, settings: BeyondSettings) -> dict:
    x, y = read_split(path, "train")
    x_val, _ = read_split(path, "val", limit=settings.val_samples)
    x_test, y_test = read_split(path, "test", limit=settings.samples)
    model = train_classifier(x, y, seed, epochs)
    spec = ModelSpec("mlp", tuple(x.shape[1:]), 10)
    ssl = ssl_model(
        None, model, spec, x, y, epochs=settings.ssl_epochs, views=settings.views, seed=seed
    )
    return evaluate_detector(model, ssl, x_test, y_test, x_val, settings, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    settings = BeyondSettings()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        path = ingest(DataSpec(source="digits"), Path(cache)).path
        runs = [one_seed(path, seed, args.epochs, settings) for seed in args.seeds]
    print(f"digits, mlp, seeds {args.seeds}, {time.perf_counter() - started:.0f} s")
    print(
        f"clean accuracy {_spread([r['clean_accuracy'] for r in runs])}, clean flagged "
        f"{_spread([r['clean']['flagged'] for r in runs])}"
    )
    print(f"{'attack':<18}" + "".join(f"{c:>22}" for c in COLUMNS))
    for i, row in enumerate(runs[0]["attacks"]):
        cells = [_spread([r["attacks"][i][c] for r in runs]) for c in COLUMNS]
        print(f"{row['name']:<18}" + "".join(f"{c:>22}" for c in cells))


def _spread(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{np.nanmean(values):.3f} +- {np.nanstd(values):.3f}"


if __name__ == "__main__":
    main()
