"""One continual experiment on Ray: a learner actor per method, all meeting the same stream.

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
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from components.continual.learners import LearnerConfig
from components.continual.metrics import summary
from components.continual.scenarios import Task
from components.continual.stream import StreamLearner

log = logging.getLogger(__name__)


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
