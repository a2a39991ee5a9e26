"""Learning-rate schedules for a stream of tasks, as functions of the *global* step.

``InfiniteSchedule`` is the infinite learning-rate schedule of Ibrahim et al., "Simple and
Scalable Strategies to Continually Pre-train Large Language Models" (TMLR 2024, Sec. 7), studied
for continual pre-training by Singh et al., "Beyond Cosine Decay: On the effectiveness of
Infinite Learning Rate Schedule for Continual Pre-training" (2025). With global step ``t``,
``W = warmup_steps``, ``C = cooldown_steps`` and, for the task that ends at step ``E``,
``A = anneal_steps`` and ``T_ann = E - A``:

1. warm-up, ``0 <= t <= W``:          ``lr = max_lr * t / W``
2. cool-down, ``W < t <= W + C``:     ``lr = const_lr + (max_lr - const_lr) / 2
   * (1 + cos(pi * (t - W) / C))``
3. constant, ``W + C < t <= T_ann``:  ``lr = const_lr``
4. annealing, ``T_ann < t <= E``:     ``lr = const_lr * (min_lr / const_lr) ** ((t - T_ann) / A)``

Phases 1-2 happen once, at the start of the stream. Every task ends with its own annealing
phase (so the checkpoint at a task's end is taken at ``min_lr``), and the next task goes on from
the constant phase at ``const_lr``: the learning rate is never warmed up again, which Singh et al.
identify as the cause of forgetting under repeated cosine schedules. (In Ibrahim et al. training
resumes from the checkpoint taken before annealing; a learner that keeps its annealed weights
simply continues at ``const_lr``.)

``RepeatedCosineSchedule`` is the baseline: every task re-warms linearly to ``max_lr`` and then
decays with a cosine to ``min_lr`` at the task's end.

Steps are 0-based optimizer steps; ``task_end_step`` is the index of a task's *last* step
(inclusive), whose learning rate is ``min_lr``. ``ScheduleLR`` adapts either schedule to a torch
``LRScheduler`` that counts global steps across tasks.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["InfiniteSchedule", "RepeatedCosineSchedule", "ScheduleLR"]


def _next_end(step: int, task_end_steps: Sequence[int]) -> int | None:
    """The first task end at or after ``step`` (``task_end_steps`` sorted), or ``None``."""
    k = bisect.bisect_left(task_end_steps, step)
    return task_end_steps[k] if k < len(task_end_steps) else None


@dataclass(frozen=True)
class InfiniteSchedule:
    """Infinite learning-rate schedule (Ibrahim et al. 2024; Singh et al. 2025); see the module.

    Args:
        max_lr: peak learning rate, reached at the end of warm-up.
        const_lr: learning rate of the constant phase (and at the start of every later task).
        min_lr: learning rate at the end of each task's annealing phase (> 0).
        warmup_steps: linear warm-up from 0 to ``max_lr`` (once, at the start of the stream).
        cooldown_steps: cosine cool-down from ``max_lr`` to ``const_lr`` (once, after warm-up).
        anneal_steps: exponential decay from ``const_lr`` to ``min_lr`` over each task's last
            ``anneal_steps`` steps; 0 disables annealing.
    """

    max_lr: float
    const_lr: float
    min_lr: float
    warmup_steps: int
    cooldown_steps: int
    anneal_steps: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.min_lr <= self.const_lr <= self.max_lr:
            raise ValueError(
                "need 0 < min_lr <= const_lr <= max_lr, got "
                f"min_lr={self.min_lr}, const_lr={self.const_lr}, max_lr={self.max_lr}"
            )
        if min(self.warmup_steps, self.cooldown_steps, self.anneal_steps) < 0:
            raise ValueError("warmup_steps, cooldown_steps and anneal_steps must be >= 0")

    @property
    def constant_start(self) -> int:
        """Last step of the cool-down; from the next step on the rate is ``const_lr``."""
        return self.warmup_steps + self.cooldown_steps

    def base_lr(self, step: int) -> float:
        """Learning rate of phases 1-3 (warm-up, cool-down, constant), without annealing."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        w, c = self.warmup_steps, self.cooldown_steps
        if step < w:
            return self.max_lr * step / w
        if step < w + c:
            progress = (step - w) / c
            return self.const_lr + 0.5 * (self.max_lr - self.const_lr) * (
                1.0 + math.cos(math.pi * progress)
            )
        return self.const_lr

    def lr(self, step: int, task_end_step: int | None = None) -> float:
        """Learning rate at global ``step``, annealing towards the task ending at ``task_end_step``.

        Raises:
            ValueError: ``step`` after ``task_end_step``, or an annealing phase that would start
                before the constant phase (the task is too short for warm-up + cool-down + anneal).
        """
        if task_end_step is None or self.anneal_steps == 0:
            return self.base_lr(step)
        if step > task_end_step:
            raise ValueError(f"step {step} is after task_end_step {task_end_step}")
        anneal_start = task_end_step - self.anneal_steps
        if anneal_start < self.constant_start:
            raise ValueError(
                f"annealing of the task ending at step {task_end_step} would start at step "
                f"{anneal_start}, before the constant phase (step {self.constant_start})"
            )
        if step <= anneal_start:
            return self.base_lr(step)
        progress = (step - anneal_start) / self.anneal_steps
        return self.const_lr * (self.min_lr / self.const_lr) ** progress

    def lr_at(self, step: int, task_end_steps: Sequence[int]) -> float:
        """Learning rate at ``step`` given the sorted last steps of all known tasks.

        A step after every known task end is in the constant phase (no annealing scheduled yet).
        """
        return self.lr(step, _next_end(step, task_end_steps))


@dataclass(frozen=True)
class RepeatedCosineSchedule:
    """Repeated cosine decay (baseline of Singh et al. 2025): re-warms at every task.

    Within a task spanning steps ``S..E`` with ``u = t - S``: ``lr = max_lr * u / W`` for
    ``u < W``, then ``min_lr + (max_lr - min_lr) / 2 * (1 + cos(pi * (u - W) / (E - S - W)))``,
    which reaches ``min_lr`` at ``t = E``.

    Args:
        max_lr: peak learning rate of every task.
        min_lr: learning rate at every task's last step.
        warmup_steps: linear warm-up at the start of every task.
    """

    max_lr: float
    min_lr: float
    warmup_steps: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_lr <= self.max_lr:
            raise ValueError(f"need 0 <= min_lr <= max_lr, got {self.min_lr}, {self.max_lr}")
        if self.warmup_steps < 0:
            raise ValueError("warmup_steps must be >= 0")

    def lr(self, step: int, task_start_step: int, task_end_step: int) -> float:
        """Learning rate at global ``step`` of the task ``task_start_step..task_end_step``."""
        if not task_start_step <= step <= task_end_step:
            raise ValueError(f"step {step} outside the task {task_start_step}..{task_end_step}")
        decay_steps = task_end_step - task_start_step - self.warmup_steps
        if decay_steps <= 0:
            raise ValueError("task is not longer than warmup_steps")
        u = step - task_start_step
        if u < self.warmup_steps:
            return self.max_lr * u / self.warmup_steps
        progress = (u - self.warmup_steps) / decay_steps
        return self.min_lr + 0.5 * (self.max_lr - self.min_lr) * (1 + math.cos(math.pi * progress))

    def lr_at(self, step: int, task_end_steps: Sequence[int]) -> float:
        """Learning rate at ``step`` given the sorted last steps of all (contiguous) tasks."""
        k = bisect.bisect_left(task_end_steps, step)
        if k == len(task_end_steps):
            raise ValueError(f"step {step} is after every known task end; add the task's end")
        start = task_end_steps[k - 1] + 1 if k else 0
        return self.lr(step, start, task_end_steps[k])


class ScheduleLR(LRScheduler):
    """Torch ``LRScheduler`` that sets every param group's lr to ``schedule.lr_at(step, ends)``.

    ``step`` is the global optimizer step across tasks (``last_epoch``), so a learner keeps one
    scheduler for the whole stream and announces each task's last step with ``add_task_end``
    (before that task's annealing phase begins). Call ``scheduler.step()`` after
    ``optimizer.step()``, as for any torch scheduler.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: InfiniteSchedule | RepeatedCosineSchedule,
        task_end_steps: Iterable[int] = (),
        last_epoch: int = -1,
    ) -> None:
        self.schedule = schedule
        self.task_end_steps = sorted(int(s) for s in task_end_steps)
        super().__init__(optimizer, last_epoch)

    def add_task_end(self, step: int) -> None:
        """Register the last global step of a task."""
        bisect.insort(self.task_end_steps, int(step))

    def get_lr(self) -> list[float]:
        lr = self.schedule.lr_at(self.last_epoch, self.task_end_steps)
        return [lr for _ in self.optimizer.param_groups]
