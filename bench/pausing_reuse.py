"""PBT and HyperBand sweeps with and without worker reuse: wall time, and whether rows survive.

PBT's exploits and HyperBand's pauses stop a trial and restart it later from a checkpoint. Before,
these methods started a fresh Ray worker process for every restart (Tune's ``reuse_actors`` off);
now a restarted trial runs in a free process that already holds the imports and the dataset.
Each method runs twice, with the same seed, space and trials, each run on a Ray started for it:
``--no-reuse`` behaviour first, then reuse. Printed per run: wall time, the worker processes
the trials ran in, the restarts (PBT: exploits recorded; HyperBand: trials restored from a
checkpoint), and rows: the reports the driver received, against the rows the sweep kept
(``components.search.trial_rows``) and the rows in Tune's own ``result.json`` files, which a
restarted trial gets copied back from the experiment folder and can lose.

    python bench/pausing_reuse.py                   # pbt and hyperband, 8 trials, 6 epochs
    python bench/pausing_reuse.py --methods pbt --trials 4 --epochs 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

from components.data.ingest import ingest
from components.data.reader import load_meta
from components.data.spec import DataSpec
from components.search.sweep_config import SweepConfig
from components.search.trial_rows import read_rows
from components.search.tune_sweep import run_sweep
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.ray_runtime import ensure_ray

SPACE = {
    "train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "train.weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-2},
}


class Reports(tune.Callback):
    """Counts the reports the driver receives and the processes (pids) they came from."""

    def __init__(self) -> None:
        self.count, self.pids, self.restored = 0, set(), 0
        self.last: dict[str, int] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.count += 1
        self.pids.add(result["pid"])
        # a report not following the trial's previous one: it restarted from a checkpoint
        if result.get("iterations_since_restore") == 1 and trial.trial_id in self.last:
            self.restored += 1
        self.last[trial.trial_id] = result["training_iteration"]


def run(method: str, reuse: bool, args, dataset: Path, spec: ModelSpec, root: Path) -> dict:
    ensure_ray(num_cpus=args.cpus)
    reports = Reports()
    start = time.perf_counter()
    try:
        out = run_sweep(
            dataset_path=dataset,
            spec=spec,
            train=TrainConfig(epochs=args.epochs, batch_size=64, early_stopping_patience=0),
            space=SPACE,
            sweep=SweepConfig(
                method=method,
                num_samples=args.trials,
                max_concurrent=args.max_concurrent,
                perturbation_interval=args.perturbation_interval,
                quantile_fraction=0.25,
                reduction_factor=3,
                seed=args.seed,
            ),
            storage_path=root,
            name=f"{method}-{'reuse' if reuse else 'fresh'}",
            callbacks=[reports],
            reuse_actors=reuse,
        )
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    experiment = Path(out.experiment_path)
    tune_rows = sum(
        len((experiment / t["trial"] / "result.json").read_text().splitlines()) for t in out.trials
    )
    return {
        "wall_s": wall,
        "processes": len(reports.pids),
        "restarts": reports.restored,
        "reports": reports.count,
        "kept": sum(len(read_rows(experiment / t["trial"]) or []) for t in out.trials),
        "tune_rows": tune_rows,
        "best": max(r.get("val_accuracy", 0) for t in out.trials for r in t["history"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["pbt", "hyperband"])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--perturbation-interval", type=int, default=2)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = ingest(DataSpec(source="digits"), root / "cache").path
        meta = load_meta(dataset)
        spec = ModelSpec("mlp", meta.feature_shape, meta.num_classes)
        header = f"{'method':<10}{'reuse':>6}{'wall s':>8}{'procs':>6}{'restarts':>9}"
        print(header + f"{'reports':>8}{'kept':>6}{'tune rows':>10}{'best acc':>9}")
        for method in args.methods:
            walls = {}
            for reuse in (False, True):
                row = run(method, reuse, args, dataset, spec, root / "runs")
                walls[reuse] = row["wall_s"]
                print(
                    f"{method:<10}{'yes' if reuse else 'no':>6}{row['wall_s']:>8.1f}"
                    f"{row['processes']:>6}{row['restarts']:>9}{row['reports']:>8}"
                    f"{row['kept']:>6}{row['tune_rows']:>10}{row['best']:>9.4f}"
                )
            print(f"{method}: wall with reuse / without = {walls[True] / walls[False]:.2f}")


if __name__ == "__main__":
    main()
