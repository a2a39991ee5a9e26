"""Continual-learning metrics over the accuracy matrix ``R``.

``R`` is a ``T x T`` array with ``R[i, j]`` the accuracy on (the test set of) task ``j`` after
training on tasks ``0..i``. Entries above the diagonal (tasks not yet seen) are only used by
forward transfer. All accuracies are fractions in ``[0, 1]``.

Definitions follow:

- Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017 (GEM):
  average accuracy, backward transfer (BWT), forward transfer (FWT).
- Chaudhry et al., "Riemannian Walk for Incremental Learning: Understanding Forgetting and
  Intransigence", ECCV 2018 (RWalk): average accuracy and the max-based forgetting measure.
- Rebuffi et al., "iCaRL: Incremental Classifier and Representation Learning", CVPR 2017:
  average incremental accuracy.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "summary",
]


def _check_matrix(R: np.ndarray, *, min_tasks: int = 1, metric: str = "metric") -> np.ndarray:
    """Return ``R`` as a float array after checking it is a square matrix of accuracies."""
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"accuracy matrix R must be square (T x T), got shape {R.shape}")
    if R.shape[0] < min_tasks:
        raise ValueError(f"{metric} needs at least {min_tasks} tasks in R, got T={R.shape[0]}")
    if not np.all(np.isfinite(R)) or R.min() < 0.0 or R.max() > 1.0:
        raise ValueError("accuracy matrix R must hold finite accuracies in [0, 1]")
    return R


def average_accuracy(R: np.ndarray) -> float:
    """Average accuracy after the last task: ``A_T = 1/T * sum_j R[T-1, j]``.

    (Lopez-Paz & Ranzato 2017, "ACC"; Chaudhry et al. 2018, ``A_k``.)
    """
    R = _check_matrix(R, metric="average accuracy")
    return float(R[-1].mean())


def average_incremental_accuracy(R: np.ndarray) -> float:
    """Average incremental accuracy: ``1/T * sum_i (1/(i+1) * sum_{j<=i} R[i, j])``.

    The mean over training steps of the accuracy on all tasks seen so far (Rebuffi et al. 2017,
    iCaRL). Each task is weighted equally within a step, i.e. tasks of equal test size.
    """
    R = _check_matrix(R, metric="average incremental accuracy")
    return float(np.mean([R[i, : i + 1].mean() for i in range(R.shape[0])]))


def backward_transfer(R: np.ndarray) -> float:
    """Backward transfer: ``BWT = 1/(T-1) * sum_{j<T-1} (R[T-1, j] - R[j, j])``.

    Negative values mean forgetting (Lopez-Paz & Ranzato 2017). Needs ``T >= 2``.
    """
    R = _check_matrix(R, min_tasks=2, metric="backward transfer")
    return float(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


def forward_transfer(R: np.ndarray, baseline: np.ndarray) -> float:
    """Forward transfer: ``FWT = 1/(T-1) * sum_{j>0} (R[j-1, j] - b_j)``.

    ``b_j`` is the accuracy on task ``j`` of the model at random initialisation (Lopez-Paz &
    Ranzato 2017), so ``baseline`` has one entry per task (``b_0`` is not used). ``R[j-1, j]`` is
    the accuracy on task ``j`` before training on it. Needs ``T >= 2``. In class-incremental
    learning with a growing head, ``R[j-1, j]`` is usually 0 and FWT is ``-mean(b[1:])``.
    """
    R = _check_matrix(R, min_tasks=2, metric="forward transfer")
    b = np.asarray(baseline, dtype=float)
    if b.shape != (R.shape[0],):
        raise ValueError(
            f"baseline must have one accuracy per task, shape ({R.shape[0]},), got {b.shape}"
        )
    if not np.all(np.isfinite(b)) or b.min() < 0.0 or b.max() > 1.0:
        raise ValueError("baseline must hold finite accuracies in [0, 1]")
    T = R.shape[0]
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)]))


def forgetting(R: np.ndarray) -> float:
    """Average forgetting, max-based (Chaudhry et al. 2018, RWalk).

    ``f_j = max_{l < T-1} R[l, j] - R[T-1, j]`` for each task ``j < T-1``, averaged over those
    ``T-1`` tasks: the drop from the best accuracy a task ever had before the last step to its
    accuracy now. Needs ``T >= 2``. Rows ``l < j`` (task not yet trained) are included in the
    max as in the paper; they only matter if the model was better on a task before learning it.
    """
    R = _check_matrix(R, min_tasks=2, metric="forgetting")
    best_before = R[:-1, :-1].max(axis=0)
    return float(np.mean(best_before - R[-1, :-1]))


def summary(R: np.ndarray, baseline: np.ndarray | None = None) -> dict[str, float | None]:
    """All metrics of this module for ``R`` as a dict (for reports and ``metrics.json``).

    Keys: ``num_tasks``, ``average_accuracy``, ``average_incremental_accuracy``,
    ``backward_transfer``, ``forgetting`` and ``forward_transfer``. A metric that is undefined
    is ``None``: the transfer and forgetting metrics when ``T == 1``, and ``forward_transfer``
    when no random-initialisation ``baseline`` is given.
    """
    R = _check_matrix(R, metric="summary")
    several = R.shape[0] >= 2
    return {
        "num_tasks": R.shape[0],
        "average_accuracy": average_accuracy(R),
        "average_incremental_accuracy": average_incremental_accuracy(R),
        "backward_transfer": backward_transfer(R) if several else None,
        "forgetting": forgetting(R) if several else None,
        "forward_transfer": (
            forward_transfer(R, baseline) if several and baseline is not None else None
        ),
    }
