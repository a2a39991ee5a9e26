"""The fractional-GPU part of the GPU check (``bench/gpu_check.py --sweep``): a tiny random
search whose trials each reserve ``--gpu-share`` of a GPU (``search.resources_per_trial``),
so Ray packs ``1 / share`` of them on one GPU.

Prints how many trials ran at once: the most Tune had running, the most whose epochs overlapped
(from each trial's first to last report, as the driver saw them) and, on a GPU, the most processes
``nvidia-smi`` saw on it at once (sampled every 100 ms); and checks every trial trained on CUDA.
``--gpu-share 0`` runs the same sweep on the CPU (no GPU needed: a dry run of this script).
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ray import tune

from components.data.ingest import ingest
from components.data.reader import load_meta
from components.data.spec import DataSpec
from components.search.sweep_config import SweepConfig
from components.search.tune_sweep import run_sweep
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.ray_runtime import ensure_ray

SPACE = {"train.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}}


class Overlap(tune.Callback):
    """The most trials Tune had running at once, and each trial's first and last report."""

    def __init__(self) -> None:
        self.running, self.spans, self.devices = 0, {}, {}

    def on_step_begin(self, iteration, trials, **info) -> None:
        self.running = max(self.running, sum(t.status == "RUNNING" for t in trials))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        now = time.time()
        first, _ = self.spans.get(trial.trial_id, (now - result["time_this_iter_s"], now))
        self.spans[trial.trial_id] = (first, now)
        self.devices[trial.trial_id] = result["model_device"]

    def most_at_once(self) -> int:
        """The most trials whose report spans overlap at one instant."""
        events = sorted(
            [(start, 1) for start, _ in self.spans.values()]
            + [(end, -1) for _, end in self.spans.values()]
        )
        count = best = 0
        for _, step in events:
            count += step
            best = max(best, count)
        return best


class GpuProcesses:
    """The most processes ``nvidia-smi`` lists on the GPUs at once, sampled every 100 ms."""

    def __enter__(self) -> GpuProcesses:
        self.most, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"]
        while not self._stop.is_set():
            out = subprocess.run(query, capture_output=True, text=True, check=False).stdout
            self.most = max(self.most, len([line for line in out.splitlines() if line.strip()]))
            time.sleep(0.1)


def sweep_check(args) -> None:
    """Run the packed sweep and print what ran at once; exit non-zero if a check fails."""
    share = args.gpu_share
    trials = args.trials or (round(1 / share) if share else 4)
    ensure_ray()
    with tempfile.TemporaryDirectory(prefix="sennflow-gpu-sweep-") as tmp:
        dataset = ingest(DataSpec(source="digits"), Path(tmp) / "cache").path
        meta = load_meta(dataset)
        overlap = Overlap()
        sampler = GpuProcesses() if share else None
        start = time.perf_counter()
        if sampler:
            sampler.__enter__()
        try:
            out = run_sweep(
                dataset_path=dataset,
                spec=ModelSpec("mlp", tuple(meta.feature_shape), meta.num_classes),
                train=TrainConfig(epochs=args.epochs, batch_size=64, early_stopping_patience=0),
                space=SPACE,
                sweep=SweepConfig(
                    method="random",
                    num_samples=trials,
                    max_concurrent=trials,
                    resources_per_trial={"cpu": 1, "gpu": share},
                ),
                storage_path=Path(tmp) / "tune",
                callbacks=[overlap],
            )
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
        wall = time.perf_counter() - start
    failed = [t for t in out.trials if t["status"] == "failed"]
    want = "cuda" if share else "cpu"
    on_device = sum(device.startswith(want) for device in overlap.devices.values())
    print(
        f"\nsweep: {trials} trials x {args.epochs} epochs, resources_per_trial "
        f"{{cpu: 1, gpu: {share:g}}}, {wall:.1f} s"
    )
    print(f"  trials running at once (Tune):           {overlap.running}")
    print(f"  trials training at once (report spans):  {overlap.most_at_once()}")
    if sampler:
        print(f"  processes on the GPU at once (nvidia-smi): {sampler.most}")
    print(f"  trials that trained on {want}: {on_device} of {trials}; failed: {len(failed)}")
    # Two at once on one GPU already shows packing; 1 / share is the most Ray allows.
    expected = 2 if 0 < share < 1 else 1
    ok = not failed and on_device == trials and overlap.running >= expected
    print(
        f"  packing: {'ok' if ok else 'FAILED'} (at least {expected} at once expected, at most "
        f"{min(trials, int(1 / share)) if share else trials} possible)"
    )
    if not ok:
        raise SystemExit(f"gpu_check --sweep: FAILED ({trials} trials on {want} expected)")
