"""Continual methods by name, and the learner that meets a class-incremental stream.

:class:`StreamLearner` holds one method's learner, the training split, the stream of tasks and the
test split; :meth:`StreamLearner.step` learns task ``i`` and returns row ``R[i, :]`` of the
accuracy matrix with a snapshot of the learner to restart from.
:mod:`components.continual.experiment` runs one per method as Ray actors.

The random-initialisation baseline ``b_j`` of forward transfer (Lopez-Paz & Ranzato 2017) is the
accuracy on task ``j`` of the untrained network's head over all classes. In class-incremental
learning ``R[j-1, j]`` is 0 by construction (a class not seen yet is never predicted), so forward
transfer is ``-mean(b_j)`` for every method: reported for completeness, it does not rank methods.
"""

from __future__ import annotations

import importlib
import pickle
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from components.continual.learners import Learner, LearnerConfig
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
    """One method's learner and the stream it meets (a Ray actor, see
    :mod:`components.continual.experiment`).

    Args:
        method: a key of :data:`METHODS`.
        config: network, optimiser and schedule.
        method_kwargs: the method's own keyword arguments.
        data: ``(x_train, y_train, x_test, y_test)``.
        tasks: the stream (from :func:`components.continual.scenarios.class_incremental` over
            ``y_train``); test samples are assigned to tasks by their class.
        state: a :meth:`step` result's ``state``: continue from the task it was taken after,
            exactly as the learner that took it would have (``None``: a fresh learner).
    """

    def __init__(
        self,
        method: str,
        config: LearnerConfig,
        method_kwargs: Mapping,
        data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        tasks: Sequence[Task],
        state: bytes | None = None,
    ) -> None:
        torch.set_num_threads(1)  # learners share a few cores
        self.method = method
        self.x, self.y, self.x_test, self.y_test = (np.array(a) for a in data)
        self.tasks = list(tasks)
        if state is None:
            self.learner = create_learner(method, config, **dict(method_kwargs))
            self.baseline = self._random_init_accuracy()
        else:
            self._restore(state)

    @torch.no_grad()
    def _random_init_accuracy(self) -> np.ndarray:
        self.learner.net.eval()
        pred = self.learner.net(torch.as_tensor(self.x_test)).argmax(dim=1).numpy()
        return np.array(
            [(pred == self.y_test)[np.isin(self.y_test, t.classes)].mean() for t in self.tasks]
        )

    def _snapshot(self) -> bytes:
        # Pickle: the one format that holds every method's state (network, optimiser, schedule,
        # RNGs, its own memories). It never touches the disk: it goes from this actor to the
        # driver's memory and back to this run's replacement actor, like Ray's own messages.
        return pickle.dumps((self.learner, self.baseline, torch.get_rng_state()))

    def _restore(self, state: bytes) -> None:
        self.learner, self.baseline, rng = pickle.loads(state)
        torch.set_rng_state(rng)

    def step(self, i: int) -> dict:
        """Learn task ``i`` and evaluate on every task.

        Returns:
            ``task`` (``i``), ``row`` (``R[i, :]``), ``record`` (the ``learn_task`` record),
            ``wall_s`` (training time), ``lrs`` (the learning rate of each of this task's
            steps), ``baseline`` (``b_j``: the untrained network's accuracy on each task, see
            the module docstring) and ``state`` (the learner's state after this task, to
            restart from: see the constructor).
        """
        task = self.tasks[i]
        start = time.perf_counter()
        record = self.learner.learn_task(self.x[task.indices], self.y[task.indices], task.classes)
        wall_s = time.perf_counter() - start
        row = self.learner.evaluate(self.tasks, self.x_test, self.y_test)
        return {
            "task": i,
            "row": row.tolist(),
            "record": record,
            "wall_s": wall_s,
            "lrs": self.learner.task_lrs,
            "baseline": self.baseline.tolist(),
            "state": self._snapshot(),
        }
