"""One continual experiment on Ray: a learner actor per method, all meeting the same stream.

The continual task calls :func:`run_continual` once per run (the dataset's stream, every method,
the federated stream if asked), after the flow's :func:`check_stream`; its result is the report's
``continual`` dict and :func:`continual_headline` its headline numbers.

:func:`run_methods` starts one :class:`~components.continual.stream.StreamLearner` actor per
method and drives them through the stream in lockstep (task ``i`` of every method at once), so a
run of six methods takes about as long as the slowest one.

Fault tolerance: after every task an actor returns, with its row of R, a snapshot of its whole
learner (network, optimiser, schedule, RNGs, the method's memories), which the driver keeps in
memory in place of the one before. When an actor dies (``ray.kill``, the OOM killer, a lost node:
Ray's ``RayActorError``), a new actor is built from the method's last snapshot and learns the
task again, so no completed task is lost and the run ends as an uninterrupted one would. Each
method is restarted at most ``max_restarts`` times; every restart is logged and listed in the
method's result. An exception raised by the learner itself is a bug or bad input, not a death,
and ends the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from components.continual.config import ContinualConfig
from components.continual.federated import run_federated_continual
from components.continual.learners import LearnerConfig
from components.continual.metrics import summary
from components.continual.scenarios import Task, class_incremental
from components.continual.stream import StreamLearner
from components.data.decoded_memory import check_decoded_size
from components.data.reader import load_meta, read_labels, read_split

log = logging.getLogger(__name__)

HELD_SPLITS = ("train", "test")  # the stream's tasks and the test set every task is scored on
_SCHEDULE_KEYS = ("max_lr", "const_lr", "min_lr", "warmup_steps", "cooldown_steps", "anneal_steps")


class StreamError(ValueError):
    """The dataset does not fit the configured stream (``continual.num_tasks`` /
    ``classes_per_task``, or the first task is too short for a method's schedule)."""


def learner_actor(num_cpus: float = 0.0):
    """:class:`StreamLearner` as a Ray actor class (``num_cpus=0``: methods share the cores)."""
    import ray

    return ray.remote(num_cpus=num_cpus)(StreamLearner)


class _Learners:
    """The live actor of each method, its last snapshot, and its restarts."""

    def __init__(self, start: Callable[[str, bytes | None], object], methods, max_restarts: int):
        self.start = start
        self.max_restarts = max_restarts
        self.handles = {m: start(m, None) for m in methods}
        self.states: dict[str, bytes | None] = dict.fromkeys(methods)
        self.restarts: dict[str, list[dict]] = {m: [] for m in methods}

    def restart(self, method: str, task: int, err: Exception) -> object:
        """Replace ``method``'s dead actor by one built from its last snapshot."""
        import ray

        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        self.restarts[method].append({"task": task, "reason": reason})
        if len(self.restarts[method]) > self.max_restarts:
            raise RuntimeError(
                f"continual method {method!r}: its learner actor died "
                f"{len(self.restarts[method])} times (continual.max_restarts="
                f"{self.max_restarts}), the last time at task {task}: {reason}"
            ) from err
        log.warning(
            "continual method %s: learner actor died at task %d (%s); restarting it from %s",
            method,
            task,
            reason,
            f"after task {task - 1}" if self.states[method] else "the start",
        )
        with contextlib.suppress(Exception):  # an unavailable actor may still be alive
            ray.kill(self.handles[method], no_restart=True)
        self.handles[method] = self.start(method, self.states[method])
        return self.handles[method]

    def kill_all(self) -> None:
        import ray

        for handle in self.handles.values():
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)


def run_streams(
    start: Callable[[str, bytes | None], object],
    methods: Sequence[str],
    num_tasks: int,
    on_task: Callable[[str, dict], None] | None = None,
    max_restarts: int = 3,
    after_task: Callable[[str, int, object], None] | None = None,
) -> dict[str, dict]:
    """Drive one learner actor per method through the stream, restarting the ones that die.

    Args:
        start: ``start(method, state) -> actor handle``: a :func:`learner_actor` for ``method``
            built from a snapshot ``state`` (``None``: from scratch).
        methods: the methods, one actor each.
        num_tasks: tasks in the stream.
        on_task: optional ``on_task(method, step_result)`` after each method's task (the
            result without its ``state``).
        max_restarts: how often each method's actor may be replaced before the run fails.
        after_task: optional ``after_task(method, task, handle)`` once a method's task is done
            (fault drills kill the actor here).

    Returns:
        Per method: ``R`` (list of rows), ``summary`` (:func:`~components.continual.metrics.summary`
        with the random-initialisation baseline), ``wall_s`` (training time, all tasks),
        ``records`` (each task's record), ``lrs`` (learning rate per step), ``baseline`` (the
        random-initialisation accuracy per task) and ``restarts`` (``{task, reason}`` per
        restart).

    Raises:
        RuntimeError: a method's actor died more than ``max_restarts`` times.
    """
    import ray

    learners = _Learners(start, methods, max_restarts)
    results: dict[str, list[dict]] = {m: [] for m in methods}
    try:
        for i in range(num_tasks):
            pending = {learners.handles[m].step.remote(i): m for m in methods}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                method = pending.pop(done[0])
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayActorError as err:
                    pending[learners.restart(method, i, err).step.remote(i)] = method
                    continue
                learners.states[method] = result.pop("state")
                results[method].append(result)
                if on_task is not None:
                    on_task(method, result)
                if after_task is not None:
                    after_task(method, i, learners.handles[method])
    finally:
        learners.kill_all()
    return {m: _method_result(results[m], learners.restarts[m]) for m in methods}


def _method_result(steps: list[dict], restarts: list[dict]) -> dict:
    R = np.array([s["row"] for s in steps], dtype=float)
    baseline = steps[-1]["baseline"]
    return {
        "R": R.tolist(),
        "summary": summary(R, np.array(baseline)),
        "wall_s": sum(s["wall_s"] for s in steps),
        "records": [s["record"] for s in steps],
        "lrs": [lr for s in steps for lr in s["lrs"]],
        "baseline": baseline,
        "restarts": restarts,
    }


def run_methods(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tasks: Sequence[Task],
    learners: Mapping[str, LearnerConfig],
    method_params: Mapping[str, Mapping] | None = None,
    on_task: Callable[[str, dict], None] | None = None,
    max_restarts: int = 3,
    after_task: Callable[[str, int, object], None] | None = None,
) -> dict[str, dict]:
    """Run every method of ``learners`` through ``tasks`` on Ray learner actors (Ray must be
    initialised); see :func:`run_streams` for the result and the restarts.

    Args:
        data: ``(x_train, y_train, x_test, y_test)``, inputs flattened; put in the object store
            once and shared by every actor (and every replacement).
        tasks: the stream, over ``y_train``.
        learners: method -> its :class:`LearnerConfig`.
        method_params: per-method keyword arguments of the learner classes.
        on_task, max_restarts, after_task: as in :func:`run_streams`.
    """
    import ray

    shared = ray.put(data)
    actor = learner_actor()
    params = method_params or {}

    def start(method: str, state: bytes | None):
        return actor.remote(
            method, learners[method], params.get(method, {}), shared, list(tasks), state
        )

    return run_streams(start, list(learners), len(tasks), on_task, max_restarts, after_task)


def check_stream(dataset_path: Path, config: ContinualConfig) -> None:
    """Fail before anything is written when the dataset's classes do not fit the stream, when
    the first task is too short for a method's warm-up, cool-down and annealing, or when an
    image dataset is too large to hold in memory.

    Raises:
        StreamError: naming the ``continual.*`` keys at fault and what to change.
        DataError: the decoded splits of an image dataset are over the in-memory limit.
    """
    check_decoded_size(dataset_path, HELD_SPLITS, "continual")
    y = read_labels(dataset_path, "train")
    try:
        tasks = class_incremental(y, config.num_tasks, classes_per_task=config.classes_per_task)
    except ValueError as err:
        raise StreamError(f"continual.num_tasks / continual.classes_per_task: {err}") from err
    num_features, num_classes = load_meta(dataset_path).num_features, int(y.max()) + 1
    for method in config.methods:
        c = config.learner_config(method, num_features, num_classes)
        steps = c.epochs * math.ceil(len(tasks[0]) / c.batch_size)
        needed = c.warmup_steps + c.cooldown_steps + c.anneal_steps + 1
        if steps < needed:
            raise StreamError(
                f"continual.learner: for {method}, the first task ({len(tasks[0])} samples, "
                f"{steps} steps at epochs={c.epochs}, batch_size={c.batch_size}) is shorter than "
                f"warmup_steps + cooldown_steps + anneal_steps + 1 = {needed}; raise "
                "continual.learner.epochs or lower those steps"
            )


def run_continual(
    dataset_path: Path,
    config: ContinualConfig,
    on_step: Callable[[dict], None] | None = None,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> dict:
    """Run every method of ``config`` through one class-incremental stream of the dataset (and
    the federated stream if ``config.federated_clients``); Ray must be initialised.

    The train and test splits are held in memory, flattened (an image dataset decoded, up to
    :data:`components.data.decoded_memory.WHOLE_SPLITS_BYTES`; over it, ``DataError``).

    Args:
        dataset_path: the ingested dataset.
        config: the experiment.
        on_step: optional ``on_step({"label", "accuracy"})`` after each method's task (the
            average accuracy on the tasks so far) and after each federated merge.
        logger: where the stream, each task, every restart and each method's summary are told
            (the task passes Prefect's run logger).

    Returns:
        The report's ``continual`` dict: ``num_tasks``, ``tasks`` (classes per task),
        ``schedule`` (the learning-rate schedule when every method shares it), ``methods`` (per
        method, :func:`run_streams`' result and its learner ``config``) and ``federated``.
    """
    check_decoded_size(dataset_path, HELD_SPLITS, "continual")
    x, y = read_split(dataset_path, "train")
    x_test, y_test = read_split(dataset_path, "test")
    data = (x.reshape(len(x), -1), y, x_test.reshape(len(x_test), -1), y_test)
    num_features, num_classes = data[0].shape[1], int(max(y.max(), y_test.max())) + 1
    learners = {m: config.learner_config(m, num_features, num_classes) for m in config.methods}
    tasks = class_incremental(
        y, config.num_tasks, classes_per_task=config.classes_per_task, seed=config.seed
    )
    logger.info("stream: %s", " -> ".join(str(list(t.classes)) for t in tasks))
    methods = _run_logged(data, tasks, learners, config, on_step, logger)
    federated = None
    if config.federated_clients:
        federated = run_federated_continual(
            data,
            config.learner_config("ncm", num_features, num_classes),
            config.federated_clients,
            config.num_tasks,
            config.seed,
            on_task=lambda i, row: _tell(on_step, "federated", _mean(row)),
            embedding=config.federated_embedding,
        )
    return {
        "num_tasks": config.num_tasks,
        "tasks": [list(t.classes) for t in tasks],
        "schedule": _shared_schedule(learners.values()),
        "methods": methods,
        "federated": federated,
    }


def _run_logged(data, tasks, learners, config: ContinualConfig, on_step, logger) -> dict:
    """:func:`run_methods`, telling ``logger`` and ``on_step`` about every task and restart."""

    def on_task(method: str, result: dict) -> None:
        row = [a for a in result["row"][: result["task"] + 1] if not math.isnan(a)]
        accuracy = _mean(row)
        logger.info(
            "%s task %d/%d: average accuracy on the tasks so far %.4f",
            method,
            result["task"] + 1,
            config.num_tasks,
            accuracy,
        )
        _tell(on_step, method, accuracy)

    methods = run_methods(
        data,
        tasks,
        learners,
        config.method_params,
        on_task=on_task,
        max_restarts=config.max_restarts,
    )
    for method, result in methods.items():
        for restart in result["restarts"]:
            logger.warning(
                "%s: learner actor died at task %d and was restarted from its last completed "
                "task: %s",
                method,
                restart["task"] + 1,
                restart["reason"],
            )
        forgetting = result["summary"]["forgetting"]  # None for a stream of one task
        logger.info(
            "%s: average accuracy %.4f, forgetting %s",
            method,
            result["summary"]["average_accuracy"],
            "n/a (one task)" if forgetting is None else f"{forgetting:.4f}",
        )
        result["config"] = dataclasses.asdict(learners[method])
    return methods


def continual_headline(result: dict) -> dict:
    """The run's headline numbers from :func:`run_continual`'s result: per method, the final
    average accuracy and forgetting (left out for a stream of one task, which has none); the
    merged federated average accuracy."""
    headline: dict = {}
    for method, run in result["methods"].items():
        headline[f"{method}_average_accuracy"] = run["summary"]["average_accuracy"]
        if run["summary"]["forgetting"] is not None:
            headline[f"{method}_forgetting"] = run["summary"]["forgetting"]
    if result.get("federated"):
        headline["federated_merged_average_accuracy"] = result["federated"]["summary_merged"][
            "average_accuracy"
        ]
    return headline


def _tell(on_step: Callable[[dict], None] | None, label: str, accuracy: float) -> None:
    if on_step is not None:
        on_step({"label": label, "accuracy": accuracy})


def _mean(row: list[float]) -> float:
    return sum(row) / len(row)


def _shared_schedule(configs: Iterable[LearnerConfig]) -> dict | None:
    """The schedule's settings when every method uses the same ones, else None (each method's
    ``config`` in the result holds its own)."""
    schedules = {tuple(getattr(c, k) for k in _SCHEDULE_KEYS) for c in configs}
    return dict(zip(_SCHEDULE_KEYS, schedules.pop(), strict=True)) if len(schedules) == 1 else None
