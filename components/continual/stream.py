"""Learner actors: one per continual method, each meeting the same class-incremental stream.

:class:`StreamLearner` holds one method's learner, the training split, the stream of tasks and the
test split; :meth:`StreamLearner.step` learns task ``i`` and returns row ``R[i, :]`` of the
accuracy matrix. :func:`learner_actor` makes it a Ray actor and :func:`run_streams` drives several
of them through the stream in lockstep (task ``i`` of every method at once), so a run of six
methods takes about as long as the slowest one.

The random-initialisation baseline ``b_j`` of forward transfer (Lopez-Paz & Ranzato 2017) is the
accuracy on task ``j`` of the untrained network's head over all classes. In class-incremental
learning ``R[j-1, j]`` is 0 by construction (a class not seen yet is never predicted), so forward
transfer is ``-mean(b_j)`` for every method: reported for completeness, it does not rank methods.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from components.continual.learners import Learner, LearnerConfig
from components.continual.metrics import summary
from components.continual.scenarios import Task

# method -> (module, class); imported on first use so a Ray actor loads only its own method.
METHODS: dict[str, tuple[str, str]] = {
    "finetune": ("components.continual.learners", "FinetuneLearner"),
    "joint": ("components.continual.learners", "JointLearner"),
    "ncm": ("components.continual.learners", "NCMLearner"),
    "prd": ("components.continual.prd", "PRDLearner"),
    "napa_vq": ("components.continual.napa_vq", "NAPAVQLearner"),
    "protocl": ("components.continual.protocl", "ProtoCLLearner"),
}


def learner_class(method: str) -> type[Learner]:
    """The learner class of ``method`` (a key of :data:`METHODS`).

    Raises:
        ValueError: unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown continual method {method!r}; choose from {sorted(METHODS)}")
    module, name = METHODS[method]
    return getattr(importlib.import_module(module), name)


def default_config(method: str) -> LearnerConfig:
    """``method``'s own default configuration: its class's ``DEFAULT_CONFIG`` if it has one
    (tuned with the method), else ``LearnerConfig()``."""
    return getattr(learner_class(method), "DEFAULT_CONFIG", LearnerConfig())


def create_learner(method: str, config: LearnerConfig | None = None, **kwargs) -> Learner:
    """A learner of ``method`` (a key of :data:`METHODS`); ``kwargs`` go to its class.

    ``config=None`` uses the method's :func:`default_config`.

    Raises:
        ValueError: unknown method, or a keyword its class rejects (the message names it).
    """
    cls = learner_class(method)
    try:
        return cls(config or default_config(method), **kwargs)
    except TypeError as err:
        raise ValueError(f"continual method {method!r}: {err}") from err


def learn_stream(
    learner: Learner,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tasks: Sequence[Task],
    on_task: Callable[[int, Learner, np.ndarray, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Run ``learner`` in this process through ``tasks``: learn task ``i``, fill ``R[i, :]``.

    Args:
        learner: a fresh learner.
        data: ``(x_train, y_train, x_test, y_test)``; ``tasks`` index the training split.
        tasks: the stream.
        on_task: optional ``on_task(i, learner, x_task, y_task)`` after each task.

    Returns:
        The accuracy matrix ``R`` and each task's ``learn_task`` record.
    """
    x, y, x_test, y_test = data
    R = np.zeros((len(tasks), len(tasks)))
    records = []
    for i, task in enumerate(tasks):
        x_task, y_task = x[task.indices], y[task.indices]
        records.append(learner.learn_task(x_task, y_task, task.classes))
        R[i] = learner.evaluate(tasks, x_test, y_test)
        if on_task is not None:
            on_task(i, learner, x_task, y_task)
    return R, records


class StreamLearner:
    """One method's learner and the stream it meets (a Ray actor via :func:`learner_actor`).

    Args:
        method: a key of :data:`METHODS`.
        config: network, optimiser and schedule.
        method_kwargs: the method's own keyword arguments.
        data: ``(x_train, y_train, x_test, y_test)``.
        tasks: the stream (from :func:`components.continual.scenarios.class_incremental` over
            ``y_train``); test samples are assigned to tasks by their class.
    """

    def __init__(
        self,
        method: str,
        config: LearnerConfig,
        method_kwargs: Mapping,
        data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        tasks: Sequence[Task],
    ) -> None:
        torch.set_num_threads(1)  # learners share a few cores
        self.method = method
        self.learner = create_learner(method, config, **dict(method_kwargs))
        self.x, self.y, self.x_test, self.y_test = (np.array(a) for a in data)
        self.tasks = list(tasks)
        self.baseline = self._random_init_accuracy()
        self.lrs: list[float] = []

    @torch.no_grad()
    def _random_init_accuracy(self) -> np.ndarray:
        self.learner.net.eval()
        pred = self.learner.net(torch.as_tensor(self.x_test)).argmax(dim=1).numpy()
        return np.array(
            [(pred == self.y_test)[np.isin(self.y_test, t.classes)].mean() for t in self.tasks]
        )

    def step(self, i: int) -> dict:
        """Learn task ``i`` and evaluate on every task: ``row`` is ``R[i, :]``."""
        task = self.tasks[i]
        start = time.perf_counter()
        record = self.learner.learn_task(self.x[task.indices], self.y[task.indices], task.classes)
        wall_s = time.perf_counter() - start
        self.lrs += self.learner.task_lrs
        row = self.learner.evaluate(self.tasks, self.x_test, self.y_test)
        return {"task": i, "row": row.tolist(), "record": record, "wall_s": wall_s}

    def stream_lrs(self) -> list[float]:
        """The learning rate of every optimizer step so far, across tasks."""
        return list(self.lrs)

    def random_init_baseline(self) -> list[float]:
        """``b_j``: the untrained network's accuracy on each task (see the module docstring)."""
        return self.baseline.tolist()


def learner_actor(num_cpus: float = 0.0):
    """:class:`StreamLearner` as a Ray actor class (``num_cpus=0``: methods share the cores)."""
    import ray

    return ray.remote(num_cpus=num_cpus)(StreamLearner)


def run_streams(
    actors: Mapping[str, object],
    num_tasks: int,
    on_task: Callable[[str, dict], None] | None = None,
) -> dict[str, dict]:
    """Drive learner actors through the stream, task by task, all methods at once.

    Args:
        actors: method name -> :func:`learner_actor` handle.
        num_tasks: tasks in the stream.
        on_task: optional ``on_task(method, step_result)`` after each method's task.

    Returns:
        Per method: ``R`` (list of rows), ``summary`` (:func:`~components.continual.metrics.summary`
        with the random-initialisation baseline), ``wall_s`` (training time, all tasks),
        ``records`` (each task's record), ``lrs`` (learning rate per step) and ``baseline``
        (the random-initialisation accuracy per task).
    """
    import ray

    rows: dict[str, list] = {m: [] for m in actors}
    records: dict[str, list] = {m: [] for m in actors}
    wall: dict[str, float] = dict.fromkeys(actors, 0.0)
    for i in range(num_tasks):
        pending = {actor.step.remote(i): method for method, actor in actors.items()}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            method = pending.pop(done[0])
            result = ray.get(done[0])
            rows[method].append(result["row"])
            records[method].append(result["record"])
            wall[method] += result["wall_s"]
            if on_task is not None:
                on_task(method, result)
    out = {}
    for method, actor in actors.items():
        baseline, lrs = ray.get([actor.random_init_baseline.remote(), actor.stream_lrs.remote()])
        R = np.array(rows[method], dtype=float)
        out[method] = {
            "R": R.tolist(),
            "summary": summary(R, np.array(baseline)),
            "wall_s": wall[method],
            "records": records[method],
            "lrs": lrs,
            "baseline": baseline,
        }
    return out
