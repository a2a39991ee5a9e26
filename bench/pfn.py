"""PFN checks (Müller et al., ICLR 2022), side by side in one run (not a test).

1. GP regression: a PFN fitted on the 1-D GP prior with fixed hyperparameters against the exact
   GP posterior in closed form with the same hyperparameters, on held-out prior tasks (3
   evaluation seeds, context sizes 4..32): mean |mu_PFN - mu_GP|, mean |sd_PFN - sd_GP| / sd_GP,
   the test NLL of both, and the time of one batch of predictions (PFN forward vs exact GP).
2. Tabular classification: a PFN fitted on the BNN prior (classification) classifies
   breast_cancer and wine with the training split as context (model=pfn), against
   GridSearchCV-tuned logistic regression and gradient boosting on the same splits (3 split
   seeds), with fit+predict times.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/pfn.py --gp-steps 1500 \
        --bnn-steps 1500
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
from components.pfn.bar_distribution import bar_mean_variance, bar_nll
from components.pfn.config import PFNTrainConfig
from components.pfn.gp import gp_posterior
from components.pfn.train import build_network, network_input, prior_borders, train_pfn
from components.pfn.weights import save_pfn_weights
from components.training.checkpoint import ModelSpec

GP = {"lengthscale": [0.2, 0.2], "outputscale": [1.0, 1.0], "noise": [0.1, 0.1]}
ARCH = {"d_model": 64, "nhead": 4, "layers": 4, "d_ff": 128}
CONTEXTS = (4, 8, 16, 32)


def spread(values) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {sd:.3f}"


def fit_pfn(cfg: PFNTrainConfig):
    net = build_network(cfg)
    start = time.perf_counter()
    rows = train_pfn(net, cfg, report=lambda row, state: print("  ", row, flush=True))
    print(
        f"  fitted in {time.perf_counter() - start:.0f} s, held-out loss {rows[-1]['val_loss']:.3f}"
    )
    return net.eval()


def gp_check(steps: int, seeds: int) -> None:
    cfg = PFNTrainConfig(prior="gp", gp=GP, steps=steps, seq_len=48, checkpoint_every=250, **ARCH)
    print(f"== GP regression: PFN fitted for {steps} steps on the GP prior {GP}")
    net, borders = fit_pfn(cfg), prior_borders(cfg)
    prior = cfg.build_prior()
    for n in CONTEXTS:
        mean_err, sd_err, nll_pfn, nll_gp, t_pfn, t_gp = [], [], [], [], [], []
        for seed in range(seeds):
            x, y = prior.sample(64, n + 16, torch.Generator().manual_seed(1000 + seed))
            start = time.perf_counter()
            with torch.no_grad():
                out = net(network_input(x, n, "regression", 1), y[:, :n])
            t_pfn.append(time.perf_counter() - start)
            mu, var = bar_mean_variance(out, borders)
            nll_pfn.append(float(bar_nll(out, y[:, n:], borders).mean()))
            start = time.perf_counter()
            exact = [
                gp_posterior(
                    x[b, :n], y[b, :n], x[b, n:], lengthscale=0.2, outputscale=1.0, noise=0.1
                )
                for b in range(64)
            ]
            t_gp.append(time.perf_counter() - start)
            gm = torch.stack([e[0] for e in exact]).float()
            gv = torch.stack([e[1] for e in exact]).float()
            mean_err.append(float((mu - gm).abs().mean()))
            sd_err.append(float(((var.sqrt() - gv.sqrt()).abs() / gv.sqrt()).mean()))
            nll_gp.append(
                float((0.5 * torch.log(2 * torch.pi * gv) + (y[:, n:] - gm) ** 2 / (2 * gv)).mean())
            )
        print(
            f"  context {n:2d}: |mu diff| {spread(mean_err)}, |sd diff|/sd {spread(sd_err)}, "
            f"NLL PFN {spread(nll_pfn)} vs GP {spread(nll_gp)}, "
            f"64 tasks: PFN {1e3 * statistics.mean(t_pfn):.1f} ms, "
            f"exact GP {1e3 * statistics.mean(t_gp):.1f} ms"
        )


def baselines(x, y, tx, ty):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    grids = {
        "logistic regression": (LogisticRegression(max_iter=2000), {"C": [0.01, 0.1, 1, 10, 100]}),
        "gradient boosting": (
            GradientBoostingClassifier(random_state=0),
            {"n_estimators": [50, 150], "max_depth": [2, 3], "learning_rate": [0.05, 0.2]},
        ),
    }
    for name, (model, grid) in grids.items():
        start = time.perf_counter()
        search = GridSearchCV(model, grid, cv=3).fit(x, y)
        yield name, float((search.predict(tx) == ty).mean()), time.perf_counter() - start


def tabular(steps: int, seeds: int, cache: Path) -> None:
    bnn = {"max_features": 32, "max_classes": 10, "task": "classification"}
    cfg = PFNTrainConfig(
        prior="bnn", bnn=bnn, steps=steps, seq_len=128, checkpoint_every=250, **ARCH
    )
    print(f"== Tabular: PFN fitted for {steps} steps on the BNN prior {bnn}")
    net = fit_pfn(cfg)
    weights = save_pfn_weights(
        cache / "pfn.safetensors",
        net,
        prior="bnn",
        task="classification",
        architecture=cfg.architecture(),
    )
    for source in ("breast_cancer", "wine"):
        scores: dict[str, list] = {}
        for seed in range(seeds):
            path = ingest(DataSpec(source=source, seed=seed), cache).path
            x, y = read_split(path, "train")
            vx, vy = read_split(path, "val")
            x, y = np.concatenate([x, vx]), np.concatenate([y, vy])
            tx, ty = read_split(path, "test")
            params = {**ARCH, "max_features": 32, "pretrained": str(weights)}
            start = time.perf_counter()
            model = ModelSpec("pfn", x.shape[1:], int(y.max()) + 1, kwargs=params).build().eval()
            model.set_context(torch.as_tensor(x), torch.as_tensor(y))
            with torch.no_grad():
                pred = model(torch.as_tensor(tx)).logits.argmax(1).numpy()
            runs = [("PFN", float((pred == ty).mean()), time.perf_counter() - start)]
            for row in [*runs, *baselines(x, y, tx, ty)]:
                scores.setdefault(row[0], []).append(row[1:])
        for name, rows in scores.items():
            print(
                f"  {source:13s} {name:20s} test accuracy {spread([r[0] for r in rows])}, "
                f"fit+predict {statistics.mean(r[1] for r in rows):.3f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gp-steps", type=int, default=1500)
    parser.add_argument("--bnn-steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=("gp", "tabular"), default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only != "tabular":
        gp_check(args.gp_steps, args.seeds)
    if args.only != "gp":
        with tempfile.TemporaryDirectory() as tmp:
            tabular(args.bnn_steps, args.seeds, Path(tmp))


if __name__ == "__main__":
    main()
