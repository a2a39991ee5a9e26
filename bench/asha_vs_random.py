"""ASHA vs full-budget random search with the same trials: compute to reach the same accuracy.

Both sweeps run through the project's Ray Tune path (``components.search.tune_sweep.run_sweep``,
which trains every trial with the pipeline's own fit loop) on the digits dataset, with the same
search space, seed and number of trials, so they sample the same configurations (checked and
printed). ``random`` runs every trial for the full ``--epochs``; ``asha`` stops poor trials at
its rungs (``--grace-period`` x ``--reduction-factor`` ^ k epochs).

Measured, per method: the best validation accuracy and loss over all trials and epochs (what the
sweep's ``scope="all"`` selection sees), the val accuracy of the trial the sweep picks (lowest val
loss), and the compute: epochs trained summed over trials (the primary figure), wall time of the
whole sweep, and "trial s": the seconds spent inside the trials (Tune's ``time_total_s``,
summed), which leaves out each trial's process start-up and Tune's own bookkeeping.

Trial start-up (issue 16): per trial, the seconds from a free trial slot (the sweep's start, or
another trial's end as the driver sees it) to the trial's first report, less that first epoch's
training and validation (``epoch_time_s``): process start and imports (a "cold" trial, the first
in its process), reading the data, building the model, the first checkpoint. Trials reuse their
worker processes (Tune's actor reuse), so only the first trial of each process is cold; "reused"
is the mean over the others, "(in trial)" its part inside the trainable (the first
``time_this_iter_s`` less ``epoch_time_s``). Each sweep runs on a Ray started for it just
before (``--shared-ray``: one for both), as a sweep run meets it. Its first trials start new
worker processes: Tune registers its trainable with a ``runtime_env`` (environment variables
such as ``PL_DISABLE_FORK``), and Ray serves no such actor from the idle workers it pre-starts.
``--preload`` measures what it would take to start trials warm, which sennflow does not do:
Tune's trainable registered without a ``runtime_env`` (a patch of Tune's private actor class
cache) and Ray's workers importing torch, ``torch._dynamo``, Ray Tune and the trial module
before accepting work (``RAY_preload_python_modules``); ``--warm-s`` waits that long after
starting Ray, as a long-running Ray (the stack's head, a cluster) would be. Also printed:
the seconds per later epoch spent training and validating, and the rest of each Tune iteration
(checkpoint, driver round trip).
Target (issue 16): start-up < 0.5 s per trial on a reused process, and ASHA's wall time <= 0.6x
random's at the same best accuracy. ``--no-reuse`` runs both sweeps with a fresh process per
trial, as before issue 16.
Target (issue 4): ASHA uses >= 2x less compute (epochs) than random search, counted only if its
best val accuracy is at least random's best minus ``--tolerance`` (0.005, about one of the 269
validation images).

    python bench/asha_vs_random.py                        # 16 trials, 9 epochs max
    python bench/asha_vs_random.py --trials 6 --epochs 3  # quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

from components.data.ingest import ingest
from components.data.reader import load_meta
from components.data.spec import DataSpec
from components.search.sweep_config import SweepConfig
from components.search.tune_sweep import run_sweep
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.ray_runtime import ensure_ray

COMPUTE_TARGET = 2.0  # random's epochs / ASHA's epochs
STARTUP_TARGET_S = 0.5  # per trial, before its first report
WALL_TARGET = 0.6  # ASHA's wall time / random's

SPACE = {
    "train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "train.weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-2},
    "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
}


def trial_history(experiment: Path, trial: str) -> list[dict]:
    """Every epoch a trial reported (Tune's ``result.json``: one JSON object per line)."""
    lines = (experiment / trial / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class StartupClock(tune.Callback):
    """Driver-side clock of each trial's start-up (see the module docstring).

    Trials take the freed slots in order: the i-th first report is paired with the i-th free
    slot (the sum over trials does not depend on the pairing). A trial is "cold" when its
    process (``pid``) had not run a trial before: it paid the process start and the imports.
    """

    def __init__(self, slots: int) -> None:
        self.slots, self.free, self.first = slots, [], []

    def on_step_begin(self, iteration, trials, **info) -> None:
        if not self.free:
            self.free = [time.time()] * self.slots

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if trial.trial_id not in {row["trial"] for row in self.first}:
            epoch = result["epoch_time_s"]
            self.first.append(
                {
                    "trial": trial.trial_id,
                    "at": time.time(),
                    "epoch": epoch,
                    "in_trial": result["time_this_iter_s"] - epoch,
                    "pid": result["pid"],
                }
            )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.free.append(time.time())

    on_trial_error = on_trial_complete

    def startup(self) -> dict:
        """Mean start-up seconds per trial (``all``, ``cold``, ``warm``: on a reused process) and
        the part inside the trial (``in_trial``), and how many trials were cold."""
        rows = sorted(self.first, key=lambda row: row["at"])
        seen: set[int] = set()
        for row, free in zip(rows, sorted(self.free), strict=False):
            row["startup"] = row["at"] - free - row["epoch"]
            row["cold"] = row["pid"] not in seen
            seen.add(row["pid"])
        cold = [row["startup"] for row in rows if row["cold"]]
        warm = [row["startup"] for row in rows if not row["cold"]]
        mean = statistics.fmean
        return {
            "all": mean(row["startup"] for row in rows),
            "cold": mean(cold),
            "warm": mean(warm) if warm else math.nan,
            "in_trial_cold": mean(row["in_trial"] for row in rows if row["cold"]),
            "in_trial": mean(row["in_trial"] for row in rows if not row["cold"])
            if warm
            else math.nan,
            "cold_trials": len(cold),
            "span": max(self.free) - min(self.free),  # first step to the last trial's end
        }


def sweep(method: str, args, dataset: Path, spec: ModelSpec, train: TrainConfig, root: Path):
    """Run one sweep; return its summary row."""
    config = SweepConfig(
        method=method,
        num_samples=args.trials,
        max_concurrent=args.max_concurrent,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        seed=args.seed,
    )
    clock = StartupClock(args.max_concurrent)
    start = time.perf_counter()
    out = run_sweep(
        dataset_path=dataset,
        spec=spec,
        train=train,
        space=SPACE,
        sweep=config,
        storage_path=root,
        name=method,
        callbacks=[clock],
        reuse_actors=not args.no_reuse,
    )
    wall = time.perf_counter() - start
    failed = [t for t in out.trials if t["status"] == "failed"]
    if failed:
        raise SystemExit(f"{method}: {len(failed)} trial(s) failed: {failed[0].get('error')}")
    experiment = Path(out.experiment_path)
    histories = [trial_history(experiment, t["trial"]) for t in out.trials]
    rows = [r for h in histories for r in h]
    return {
        "method": method,
        "best_accuracy": max(r["val_accuracy"] for r in rows),
        "best_loss": min(r["val_loss"] for r in rows),
        "picked_accuracy": out.best_metrics.get("val_accuracy", float("nan")),
        "epochs": sum(t["epochs"] for t in out.trials),
        "per_trial": sorted(t["epochs"] for t in out.trials),
        "configs": sorted(tuple(sorted(t["config"].items())) for t in out.trials),
        "wall_s": wall,
        "trial_s": sum(h[-1]["time_total_s"] for h in histories),
        "startup": clock.startup(),
        # per epoch after a trial's first: training + validation, and the rest of Tune's
        # iteration (the checkpoint written, persisted and the driver's round trip)
        "epoch_s": statistics.fmean(r["epoch_time_s"] for h in histories for r in h[1:]),
        "report_s": statistics.fmean(
            r["time_this_iter_s"] - r["epoch_time_s"] for h in histories for r in h[1:]
        ),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=9, help="full budget per trial (max_t)")
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="mlp", help="registered model (default size)")
    parser.add_argument("--tolerance", type=float, default=0.005, help="accuracy tolerance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, default=2, help="Ray num_cpus")
    parser.add_argument(
        "--no-reuse", action="store_true", help="a fresh worker per trial (before issue 16)"
    )
    parser.add_argument(
        "--preload",
        action="store_true",
        help="what-if: trials on Ray's pre-started workers, which import the trial's modules first",
    )
    parser.add_argument(
        "--warm-s", type=float, default=0.0, help="wait after starting Ray (a long-running Ray)"
    )
    parser.add_argument(
        "--shared-ray",
        action="store_true",
        help="both sweeps on one Ray (the second finds no warm idle workers left)",
    )
    return parser.parse_args()


PRELOAD = "torch,torch._dynamo,ray.tune,components.search.trials"


def _trials_on_idle_workers() -> None:
    """What-if, not sennflow's behaviour: Ray's pre-started workers import the trial's modules
    before taking work, and Tune's trainable has no ``runtime_env``, so Ray may lease them to it
    (Tune 2.60's ``_ActorClassCache.get`` always adds one: ``{"env_vars": {"PL_DISABLE_FORK":
    "1", ...}}``)."""
    from ray.tune.execution import class_cache

    def get(self, trainable_cls):
        if trainable_cls not in self._cache:
            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return self._cache[trainable_cls]

    os.environ["RAY_preload_python_modules"] = PRELOAD  # noqa: SIM112 (Ray's own spelling)
    class_cache._ActorClassCache.get = get


def main() -> None:
    args = parse_args()
    if args.preload:
        _trials_on_idle_workers()
    with tempfile.TemporaryDirectory(prefix="sennflow-asha-") as tmp:
        root = Path(tmp)
        dataset = ingest(DataSpec(source="digits"), root / "cache").path
        meta = load_meta(dataset)
        spec = ModelSpec(args.model, tuple(meta.feature_shape), len(meta.class_names))
        train = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            early_stopping_patience=0,  # the budget is the scheduler's to cut, not the loop's
            seed=args.seed,
        )
        rows = []
        for method in ("random", "asha"):
            # each sweep meets Ray as a sweep run does: just started, with its idle workers
            if not args.shared_ray or not ray.is_initialized():
                ensure_ray(num_cpus=args.cpus)
                time.sleep(args.warm_s)
            rows.append(sweep(method, args, dataset, spec, train, root))
            if not args.shared_ray:
                ray.shutdown()
    random, asha = rows

    print(
        f"\n{args.model} on digits ({meta.row_counts['train']} train / "
        f"{meta.row_counts['val']} val rows), {args.trials} trials, up to {args.epochs} epochs, "
        f"batch {args.batch_size}, {args.max_concurrent} concurrent, seed {args.seed}; "
        f"ASHA grace {args.grace_period}, reduction factor {args.reduction_factor}"
    )
    print(
        "space: "
        + ", ".join(f"{k} {v['type']} [{v['low']}, {v['high']}]" for k, v in SPACE.items())
    )
    same = random["configs"] == asha["configs"]
    print(f"same sampled configurations in both sweeps: {same}")
    head = f"{'method':<8}{'best val acc':>14}{'best val loss':>15}{'picked acc':>12}"
    head += f"{'epochs':>8}{'wall s':>9}{'trial s':>9}"
    print("\n" + head + "   epochs per trial")
    for r in rows:
        print(
            f"{r['method']:<8}{r['best_accuracy']:>14.4f}{r['best_loss']:>15.4f}"
            f"{r['picked_accuracy']:>12.4f}{r['epochs']:>8}"
            f"{r['wall_s']:>9.1f}{r['trial_s']:>9.1f}   " + " ".join(map(str, r["per_trial"]))
        )
    print(
        "\ntrial start-up, s per trial (free slot -> first report, less the first epoch):\n"
        f"{'method':<8}{'all trials':>11}{'cold':>7}{'(in trial)':>11}{'reused':>8}"
        f"{'(in trial)':>11}"
    )
    for r in rows:
        up = r["startup"]
        print(
            f"{r['method']:<8}{up['all']:>11.2f}{up['cold']:>7.2f}{up['in_trial_cold']:>11.2f}"
            f"{up['warm']:>8.2f}{up['in_trial']:>11.2f}   "
            f"({up['cold_trials']} cold: a new process each)"
        )
    print(
        "outside the trials' span (Tuner set-up, experiment start and end), s: "
        + "; ".join(f"{r['method']} {r['wall_s'] - r['startup']['span']:.1f}" for r in rows)
    )
    print(
        "per later epoch, s: "
        + "; ".join(
            f"{r['method']} {r['epoch_s']:.3f} training + validation, {r['report_s']:.3f} report "
            "(checkpoint, Tune round trip)"
            for r in rows
        )
    )
    ratio = random["epochs"] / asha["epochs"]
    gap = asha["best_accuracy"] - random["best_accuracy"]
    reached = gap >= -args.tolerance
    print(
        f"\ncompute ratio random/ASHA: {ratio:.2f}x in epochs, "
        f"{random['wall_s'] / asha['wall_s']:.2f}x in wall time (target >= {COMPUTE_TARGET}x)"
    )
    print(
        f"ASHA best val acc - random's: {gap:+.4f} (tolerance -{args.tolerance}): "
        f"{'same accuracy reached' if reached else 'NOT reached: the saving does not count'}"
    )
    met = same and reached and ratio >= COMPUTE_TARGET
    print(f"target (issue 4, epochs): {'MET' if met else 'NOT MET'}")
    wall = asha["wall_s"] / random["wall_s"]
    startup = max(random["startup"]["warm"], asha["startup"]["warm"])
    print(
        f"ASHA wall / random wall: {wall:.2f} (target <= {WALL_TARGET}); start-up of a trial on "
        f"a reused process {startup:.2f} s at most (target < {STARTUP_TARGET_S} s); "
        f"reuse_actors={not args.no_reuse}"
    )
    met = same and reached and wall <= WALL_TARGET and startup < STARTUP_TARGET_S
    print(f"target (issue 16, wall time): {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
