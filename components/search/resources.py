"""What one search trial reserves from Ray, and where it trains.

``search.resources_per_trial`` (``{cpu: ..., gpu: ...}``) is the Ray request of every trial that
trains in its own process (``train.num_workers=1``, and the STN / DARTS / random_ws trials).
Left unset, a trial reserves ``train.cpus_per_worker`` CPUs and no GPU. A GPU fraction (``gpu:
0.25``) lets Ray place several trials on one GPU (four here); such a trial trains on CUDA.
With ``train.num_workers > 1`` each trial is a Ray Train group that reserves
``train.cpus_per_worker`` CPUs (and with ``train.use_gpu`` one GPU) per worker itself, so a
``resources_per_trial`` there would contradict it and is refused.
"""

from __future__ import annotations

import math
from numbers import Real

KEY = "search.resources_per_trial"


def parse_resources(value) -> dict[str, float] | None:
    """``value`` checked and normalised to ``{"cpu": float, "gpu": float}`` (None: unset).

    Raises:
        ValueError: naming the ``search.resources_per_trial`` key that is wrong.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{KEY} must be a mapping like {{cpu: 1, gpu: 0.25}}, not {value!r}")
    unknown = sorted(set(value) - {"cpu", "gpu"})
    if unknown:
        raise ValueError(f"{KEY}: unknown key(s) {unknown}; it takes cpu and gpu")
    cpu, gpu = value.get("cpu", 1), value.get("gpu", 0)
    for name, number in (("cpu", cpu), ("gpu", gpu)):
        if isinstance(number, bool) or not isinstance(number, Real) or not math.isfinite(number):
            raise ValueError(f"{KEY}.{name} must be a number, not {number!r}")
    if cpu <= 0:
        raise ValueError(f"{KEY}.cpu must be > 0 (a trial needs a CPU to run on), not {cpu}")
    if gpu < 0 or (gpu > 1 and gpu != int(gpu)):
        raise ValueError(
            f"{KEY}.gpu must be a fraction in [0, 1] (trials sharing a GPU) or a whole number "
            f"of GPUs, not {gpu}"
        )
    return {"cpu": float(cpu), "gpu": float(gpu)}


def trial_resources(
    given: dict[str, float] | None, *, cpus_per_worker: int, num_workers: int, in_memory: bool
) -> dict[str, float]:
    """The Ray request of one single-process trial (``num_workers`` must be 1 unless
    ``given`` is None: see :func:`check_combination`).

    Args:
        given: the parsed ``search.resources_per_trial``.
        cpus_per_worker: ``train.cpus_per_worker`` (the default CPU request).
        num_workers: ``train.num_workers``.
        in_memory: an STN / DARTS / random_ws trial (one CPU thread, no GPU, by default).
    """
    check_combination(given, num_workers=num_workers, in_memory=in_memory)
    if given is None:
        return {"cpu": 1 if in_memory else cpus_per_worker}
    return {name: amount for name, amount in given.items() if amount > 0}


def check_combination(given: dict[str, float] | None, *, num_workers: int, in_memory: bool):
    """``ValueError`` when ``search.resources_per_trial`` contradicts the training set-up."""
    if given is None:
        return
    if in_memory and given["gpu"] > 0:
        raise ValueError(
            f"{KEY}.gpu={given['gpu']:g}: STN, DARTS and random_ws trials train on the CPU; "
            "set gpu: 0 (or leave resources_per_trial unset)"
        )
    if num_workers > 1 and not in_memory:
        raise ValueError(
            f"{KEY} applies to trials trained in one process; with train.num_workers="
            f"{num_workers} each trial is a Ray Train group that reserves train.cpus_per_worker "
            "CPUs (and one GPU with train.use_gpu=true) per worker itself: set those and leave "
            f"{KEY} unset, or use train.num_workers=1"
        )


def check_cluster(request: dict[str, float], available: dict[str, float]) -> None:
    """``ValueError`` when the Ray cluster cannot hold even one trial (Tune would wait forever)."""
    for name, ray_name in (("cpu", "CPU"), ("gpu", "GPU")):
        need, have = request.get(name, 0), available.get(ray_name, 0)
        if need > have:
            raise ValueError(
                f"a trial asks for {need:g} {ray_name} ({KEY}, or train.cpus_per_worker) but "
                f"the Ray cluster has {have:g}"
            )
