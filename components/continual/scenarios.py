"""Class-incremental scenarios: split a labelled dataset into a sequence of disjoint-class tasks.

In class-incremental learning (van de Ven & Tolias, "Three scenarios for continual learning",
2019) each task brings new classes and the learner must tell apart all classes seen so far
without a task id at test time; e.g. split digits is 5 tasks of 2 classes. The class order is
drawn with a seeded generator, so a scenario is reproducible from ``(y, num_tasks, seed)``.

Uneven splits are allowed only when asked for explicitly: pass ``classes_per_task`` as a
sequence (e.g. ``[4, 2, 2, 2]`` for a larger first task). With ``classes_per_task=None`` or an
int, the classes must divide evenly into ``num_tasks`` tasks, else ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Task", "class_incremental", "seen_classes"]


@dataclass(frozen=True)
class Task:
    """One step of a class-incremental stream.

    Attributes:
        index: position of the task in the stream (0-based).
        classes: the class ids this task introduces, in the scenario's class order.
        indices: sorted positions in ``y`` of the samples of those classes.
    """

    index: int
    classes: tuple[int, ...]
    indices: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.size)


def _task_sizes(
    num_classes: int, num_tasks: int, classes_per_task: int | Sequence[int] | None
) -> list[int]:
    """Number of classes of each task; raises ``ValueError`` for splits that do not fit."""
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    if num_tasks > num_classes:
        raise ValueError(
            f"num_tasks={num_tasks} exceeds the number of classes ({num_classes}): each task "
            f"brings new classes, so set continual.num_tasks={num_classes} or fewer"
        )
    if classes_per_task is None:
        if num_classes % num_tasks:
            even = [k for k in range(2, num_classes + 1) if num_classes % k == 0]
            raise ValueError(
                f"num_tasks={num_tasks} does not divide the {num_classes} classes: set "
                f"continual.num_tasks to one of {even}, or give continual.classes_per_task as "
                f"a list of {num_tasks} sizes summing to {num_classes} for an uneven split"
            )
        return [num_classes // num_tasks] * num_tasks
    sizes = (
        [int(classes_per_task)] * num_tasks
        if isinstance(classes_per_task, int | np.integer)
        else [int(s) for s in classes_per_task]
    )
    if len(sizes) != num_tasks or min(sizes) < 1 or sum(sizes) != num_classes:
        raise ValueError(
            f"classes_per_task={classes_per_task} must give {num_tasks} tasks of >= 1 class "
            f"covering all {num_classes} classes"
        )
    return sizes


def class_incremental(
    y: np.ndarray,
    num_tasks: int,
    *,
    classes_per_task: int | Sequence[int] | None = None,
    seed: int = 0,
    shuffle_classes: bool = True,
) -> list[Task]:
    """Split labels ``y`` into ``num_tasks`` class-incremental tasks.

    Args:
        y: 1-D integer labels of the dataset (class ids need not be contiguous).
        num_tasks: number of tasks in the stream.
        classes_per_task: ``None`` (even split), an int (each task's size; must cover all
            classes) or a sequence of sizes, one per task (uneven split).
        seed: seed of the class order (``numpy.random.default_rng``).
        shuffle_classes: if ``False``, classes are taken in ascending order and ``seed`` is unused.

    Returns:
        The tasks in stream order; their classes and their sample indices partition those of ``y``.

    Raises:
        ValueError: ``y`` not 1-D integer, or a split that does not fit the classes.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    classes = np.unique(y)
    sizes = _task_sizes(classes.size, num_tasks, classes_per_task)
    if shuffle_classes:
        classes = np.random.default_rng(seed).permutation(classes)
    bounds = np.cumsum([0, *sizes])
    tasks = []
    for t in range(num_tasks):
        task_classes = classes[bounds[t] : bounds[t + 1]]
        indices = np.flatnonzero(np.isin(y, task_classes))
        tasks.append(Task(t, tuple(int(c) for c in task_classes), indices))
    return tasks


def seen_classes(tasks: Sequence[Task], i: int) -> tuple[int, ...]:
    """Classes introduced by tasks ``0..i`` (inclusive), in stream order."""
    if not 0 <= i < len(tasks):
        raise ValueError(f"task index {i} out of range for {len(tasks)} tasks")
    return tuple(c for task in tasks[: i + 1] for c in task.classes)
