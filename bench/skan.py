"""S-KAN against an MLP of the same parameter count, and against single-space KANs on functions.

"Activation Space Selectable Kolmogorov-Arnold Networks" (Yang et al., 2024) reports that
S-KAN beats the single-space KANs on function fitting and surpasses MLPs "with the same level
of parameters". Two checks, seeds ``--seeds``, side by side in one run:

* classification on ``breast_cancer``, ``wine`` and ``digits`` (the project's ingested splits):
  ``skan`` (default config: one hidden layer of 16 selectable nodes, three phases) against
  ``mlp`` with one hidden layer sized to the same parameter count (both counts are printed),
  trained by the project's fit loop (:func:`components.training.fit.fit`, the code a Ray worker
  runs) with the same optimiser, epochs and batch size; test accuracy of the final network;
* function fitting (full-batch Adam on 1000 points of ``[-1, 1]^2``, test RMSE on 1000 more):
  ``exp(sin(pi x) + y^2)`` with a ``[2, 5, 1]`` network and ``x * y`` with ``[2, 2, 1]``, two
  of the paper's tasks (from the KAN paper); S-KAN against each single-space KAN of the same
  shape (``bspline`` is KAN itself) and an MLP of about the same parameter count.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/skan.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

import torch
from torch import nn

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.models.kan_layers import SPACES, kan_layers, kan_network, narrow
from components.models.skan import SKANConfig
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit

FUNCTIONS = {
    "exp(sin(pi x) + y^2)": (
        lambda x: torch.exp(torch.sin(math.pi * x[:, :1]) + x[:, 1:] ** 2),
        (2, 5, 1),
    ),
    "x * y": (lambda x: x[:, :1] * x[:, 1:], (2, 2, 1)),
}


def spread(values: list[float], digits: int = 3) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def pruned_params(net: nn.Module) -> int:
    """Parameters still in use after pruning: each node's coefficients (and B-spline base
    weights) of its kept space only, plus every non-KAN parameter."""
    layers = kan_layers(net)
    count = params(net) - sum(params(layer) for layer in layers)
    for layer in layers:
        for index, space in enumerate(layer.spaces):
            rows = layer.kept[:, index]
            count += int(rows.sum()) * layer.coefficients[space][0].numel()
            if space == "bspline":
                count += int(rows.sum()) * layer.in_features
    return count


def splits(name: str) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        path = ingest(DataSpec(source=name), Path(tmp)).path
        return [read_split(path, split) for split in ("train", "val", "test")]


def matched_mlp_width(skan_params: int, inputs: int, classes: int) -> int:
    """Hidden width of a one-hidden-layer MLP with about ``skan_params`` parameters."""
    return max(1, round((skan_params - classes) / (inputs + 1 + classes)))


def classify(data, name: str, kwargs: dict, args, seed: int) -> tuple[float, int, int]:
    """Train one classifier with the fit loop; its test accuracy, parameter count and the
    count still in use after pruning."""
    (x, y), (vx, vy), (tx, ty) = data
    spec = ModelSpec(name, tuple(x.shape[1:]), int(y.max()) + 1, kwargs=kwargs)
    torch.manual_seed(seed)
    net = spec.build()
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=64,
        lr=args.lr,
        weight_decay=0.0,
        early_stopping_patience=0,
        seed=seed,
    )
    train = ShardBatches(x, y, batch_size=64, shuffle=True, seed=seed)
    fit(
        net,
        train,
        ShardBatches(vx, vy, batch_size=512, shuffle=False),
        cfg=cfg,
        spec=spec,
        report=lambda *_: 0,
    )
    with torch.no_grad():
        pred = net.eval()(torch.as_tensor(tx)).logits.argmax(1).numpy()
    return float((pred == ty).mean()), params(net), pruned_params(net)


def fit_function(target, widths, kind, steps: int, seed: int) -> tuple[float, int]:
    """Test RMSE and parameter count of one network fitted to ``target``: ``kind`` is ``skan``
    (all spaces, phases 0.3 / 0.1 / 0.6 as the model's defaults), a single space, or ``mlp``
    (one SiLU hidden layer of ``hidden`` units, given as ``("mlp", hidden)``)."""
    gen = torch.Generator().manual_seed(seed)
    x, x_test = (torch.rand(1000, widths[0], generator=gen) * 2 - 1 for _ in range(2))
    torch.manual_seed(seed)
    if isinstance(kind, tuple):
        net = nn.Sequential(nn.Linear(widths[0], kind[1]), nn.SiLU(), nn.Linear(kind[1], 1))
    else:
        net = kan_network(widths, spaces=SPACES if kind == "skan" else (kind,), grid=5)
    opt = torch.optim.Adam(net.parameters(), 0.01)
    config = SKANConfig()
    full, select = int(config.full_fraction * steps), int(config.select_fraction * steps)
    for step in range(steps):
        if step in (full, full + select):
            narrow(net, config.keep if step == full else 1)
        loss = (net(x) - target(x)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (net(x_test) - target(x_test)).pow(2).mean().sqrt().item(), params(net)


def classification(args) -> None:
    print(
        f"\n== classification: skan vs mlp of the same size, {args.epochs} epochs, "
        f"Adam lr {args.lr}, batch 64, seeds {args.seeds} (test accuracy, mean ± std)"
    )
    print(f"{'data':<14}{'skan':>16}{'params':>8}{'pruned':>8}{'mlp':>16}{'params':>8}{'width':>7}")
    for name in args.data:
        data = splits(name)
        inputs, classes = math.prod(data[0][0].shape[1:]), int(data[0][1].max()) + 1
        acc: dict[str, list[float]] = {"skan": [], "mlp": []}
        sizes = {}
        for seed in range(args.seeds):
            score, sizes["skan"], sizes["pruned"] = classify(data, "skan", {}, args, seed)
            acc["skan"].append(score)
            width = matched_mlp_width(sizes["skan"], inputs, classes)
            score, sizes["mlp"], _ = classify(data, "mlp", {"hidden_sizes": [width]}, args, seed)
            acc["mlp"].append(score)
        print(
            f"{name:<14}{spread(acc['skan']):>16}{sizes['skan']:>8}{sizes['pruned']:>8}"
            f"{spread(acc['mlp']):>16}{sizes['mlp']:>8}{width:>7}"
        )


def function_fitting(args) -> None:
    print(
        f"\n== function fitting: test RMSE (mean ± std over {args.seeds} seeds), "
        f"{args.steps} full-batch Adam steps, lr 0.01"
    )
    kinds = ["skan", *SPACES]
    for title, (target, widths) in FUNCTIONS.items():
        skan_params = fit_function(target, widths, "skan", 1, 0)[1]
        hidden = max(1, round((skan_params - 1) / (widths[0] + 2)))
        rows = {}
        for kind in [*kinds, ("mlp", hidden)]:
            runs = [fit_function(target, widths, kind, args.steps, s) for s in range(args.seeds)]
            label = f"mlp ({hidden} SiLU)" if isinstance(kind, tuple) else kind
            rows[label] = ([r[0] for r in runs], runs[0][1])
        print(f"{title}  (network {list(widths)})")
        for label, (rmse, count) in rows.items():
            print(f"  {label:<16}{spread(rmse, 4):>18}  params {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--data", nargs="+", default=["breast_cancer", "wine", "digits"])
    parser.add_argument("--skip", choices=["classification", "functions"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.skip != "classification":
        classification(args)
    if args.skip != "functions":
        function_fitting(args)


if __name__ == "__main__":
    main()
