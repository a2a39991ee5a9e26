"""The sanity check's headline (Adebayo et al. 2018, model-parameter randomisation) over seeds.

For every seed this trains a ``cnn`` on digits (1x8x8) with the project's fit loop, then runs
the cascade of :mod:`components.explain.checks.sanity.cascade` on the first ``--samples`` test
inputs for the post-hoc methods (each as the explain stage runs it) and, side by side in the same
run, the model-independent Sobel edge detector (the paper's baseline). Prints each method's mean
± standard deviation over seeds of SSIM and Spearman (|attribution|) to its trained-model maps
after each cumulative randomisation step (top layer first), and how many seeds flag it at the
check's default threshold (0.8 SSIM).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/sanity.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.explain.checks.sanity import CONTROL, DEFAULTS
from components.explain.checks.sanity.cascade import cascade
from components.explain.checks.sanity.controls import edge_detector
from components.explain.config import ExplainConfig
from components.explain.posthoc.stage import attribute_with
from components.perturbation.groups import group_labels
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit

METHODS = ("gradients", "smoothgrad", "ig", "gradient_x_input", "occlusion", "kernel_shap")


def train(path: Path, model: str, epochs: int, seed: int):
    """A ``model`` trained on the digits train split; its test accuracy."""
    x, y = read_split(path, "train")
    tx, ty = read_split(path, "test")
    spec = ModelSpec(model, tuple(x.shape[1:]), int(y.max()) + 1)
    torch.manual_seed(seed)
    net = spec.build()
    cfg = TrainConfig(epochs=epochs, lr=0.005, batch_size=64, seed=seed, early_stopping_patience=0)
    batches = ShardBatches(x, y, batch_size=64, shuffle=True, seed=seed)
    fit(
        net,
        batches,
        ShardBatches(tx, ty, batch_size=512, shuffle=False),
        cfg=cfg,
        spec=spec,
        report=print_nothing,
    )
    with torch.no_grad():
        accuracy = (net.eval()(torch.as_tensor(tx)).logits.argmax(1).numpy() == ty).mean()
    return net, float(accuracy)


def print_nothing(*_):
    """Fit's report hook, silenced."""


def one_seed(path: Path, model: str, epochs: int, samples: int, seed: int) -> dict:
    """Final and per-step similarities of every method for one trained network."""
    net, accuracy = train(path, model, epochs, seed)
    x, _ = read_split(path, "test", limit=samples)
    config = ExplainConfig(seed=seed, perturbation_samples=200)
    groups = group_labels(x, config.feature_groups, config.patch_size)
    explainers = {
        m: (lambda mod, inputs, target, m=m: attribute_with(mod, m, inputs, groups, config, target))
        for m in METHODS
    }
    explainers[CONTROL] = edge_detector
    found = cascade(net, x, explainers, image=True, seed=seed)
    curves = {
        name: {k: v.mean(axis=1) for k, v in s.items()} for name, s in found.similarity.items()
    }
    return {"accuracy": accuracy, "layers": found.layers, "curves": curves}


def spread(values, digits: int = 2) -> str:
    """``mean ± sd`` of ``values``."""
    values = [float(v) for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        path = ingest(DataSpec(source="digits"), Path(cache)).path
        runs = [one_seed(path, args.model, args.epochs, args.samples, s) for s in args.seeds]
    layers = runs[0]["layers"]
    print(
        f"{args.model} on digits, {len(runs)} seeds, {args.epochs} epochs, test accuracy "
        f"{spread([r['accuracy'] for r in runs], 3)}; {args.samples} test inputs; layers "
        f"randomised top first: {' > '.join(layers)}"
    )
    threshold = DEFAULTS["threshold"]
    for measure in ("ssim", "spearman"):
        print(f"\n{measure} to the trained model's maps after each cumulative step")
        print(f"{'method':18s}" + "".join(f"{'+' + layer:>16s}" for layer in layers) + "  flagged")
        for name in (*METHODS, CONTROL):
            steps = np.array([r["curves"][name][measure] for r in runs])  # (seeds, steps)
            flagged = sum(step[-1] > threshold for step in steps) if measure == "ssim" else ""
            row = "".join(f"{spread(steps[:, i]):>16s}" for i in range(len(layers)))
            print(f"{name:18s}{row}  {flagged}")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
