"""Bench: SAE vs transcoder frontier (L0 vs loss recovered) and monosemanticity (part purity of
SAE / transcoder features vs the layer's neurons) on ``parts`` with a small ``cnn``, over seeds.

Bricken et al. 2023 claim dictionary features are more monosemantic than neurons; here a
feature's monosemanticity is its part purity (the largest share of its activation mass on one
ground-truth part), side by side with the neurons' in the same run.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/sae_features.py --seeds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8, help="cnn training epochs")
    parser.add_argument("--report", type=Path, default=None, help="write seed 0's section here")
    args = parser.parse_args()
    from components.data.ingest import ingest
    from components.data.reader import load_meta, read_split
    from components.data.spec import DataSpec
    from components.explain.checks import sae
    from components.explain.checks.runner import CheckContext
    from components.models import create_model

    cache = Path(tempfile.mkdtemp(prefix="sae-bench-"))
    path = ingest(DataSpec(source="parts", num_samples=2000, num_classes=4), cache).path
    meta = load_meta(path)
    x, y = read_split(path, "train")
    settings = {"kind": "both", "expansion": 4, "epochs": 3, "samples": 300}
    rows = []
    for seed in range(args.seeds):
        start = time.perf_counter()
        torch.manual_seed(seed)
        model = create_model(
            "cnn", input_shape=meta.feature_shape, num_classes=4, channels=(16, 32)
        )
        _train(model, x, y, args.epochs, seed)
        context = CheckContext(
            model=model,
            checkpoint=Path("."),
            dataset_path=Path(path),
            meta=meta,
            config=None,
            seed=seed,
            settings=settings,
            ray_num_cpus=2,
        )
        result = sae.run(context)
        print(f"seed {seed} ({time.perf_counter() - start:.0f} s): {result['verdict']}", flush=True)
        rows.append(result)
        if seed == 0 and args.report:
            _write_section(result, args.report)
    _print_table(rows)


def _train(model, x, y, epochs: int, seed: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(xt), generator=gen).split(64):
            loss = F.cross_entropy(model(xt[index]).logits, yt[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def _print_table(results) -> None:
    def stat(values):
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

    print("\nfrontier (mean ± std over seeds):")
    print(f"{'kind':<11} {'l1':>6} {'L0':>16} {'loss recovered':>16} {'dead':>16}")
    for i, row in enumerate(results[0]["frontier"]):
        same = [r["frontier"][i] for r in results]
        print(
            f"{row['kind']:<11} {row['l1']:>6g} {stat([r['l0'] for r in same]):>16} "
            f"{stat([r['recovered'] for r in same]):>16} "
            f"{stat([r['dead_fraction'] for r in same]):>16}"
        )
    print("\npart purity (mean over units; mean ± std over seeds), layer", results[0]["layer"])
    for name in results[0]["localisation"]:
        print(f"  {name:<11} {stat([r['localisation'][name]['mean'] for r in results])}")
    print("  test loss clean", stat([r["clean_loss"] for r in results]))


def _write_section(result, path: Path) -> None:
    from components.report import markup
    from components.report.checks_section import checks_section
    from components.report.figure_set import FigureSet

    figures = FigureSet(path.parent / "figures")
    body = checks_section({"sae": result}, figures)
    path.write_text(markup.page("sae bench", "seed 0", [body]))


if __name__ == "__main__":
    main()
