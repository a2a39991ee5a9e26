"""Infinite and repeated-cosine learning-rate schedules: closed forms, shape, torch adapter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.continual.schedules import InfiniteSchedule, RepeatedCosineSchedule, ScheduleLR

MAX, CONST, MIN = 1.0, 0.5, 0.01
W, C, A = 10, 20, 10
ENDS = [99, 199, 299]  # three tasks of 100 steps; values are last steps (inclusive)


@pytest.fixture
def inf():
    return InfiniteSchedule(MAX, CONST, MIN, warmup_steps=W, cooldown_steps=C, anneal_steps=A)


def test_phase_boundaries_closed_form(inf):
    assert inf.lr(0) == 0.0
    assert inf.lr(5) == pytest.approx(MAX * 5 / W)
    assert inf.lr(W) == pytest.approx(MAX)
    assert inf.lr(W + C // 2) == pytest.approx(CONST + (MAX - CONST) / 2)  # cos(pi/2) = 0
    assert inf.lr(W + C) == pytest.approx(CONST)
    assert inf.lr(10_000) == CONST  # constant phase has no end
    end = ENDS[0]
    assert inf.lr(end - A, end) == pytest.approx(CONST)
    assert inf.lr(end - A // 2, end) == pytest.approx(CONST * math.sqrt(MIN / CONST))
    assert inf.lr(end, end) == pytest.approx(MIN)


def test_monotone_phases(inf):
    lrs = np.array([inf.lr_at(s, ENDS) for s in range(ENDS[0] + 1)])
    assert np.all(np.diff(lrs[: W + 1]) > 0)  # warm-up rises
    assert np.all(np.diff(lrs[W : W + C + 1]) < 0)  # cool-down falls
    assert np.all(lrs[W + C : ENDS[0] - A + 1] == CONST)  # constant
    assert np.all(np.diff(lrs[ENDS[0] - A :]) < 0)  # annealing falls


def test_later_tasks_never_rewarm(inf):
    rep = RepeatedCosineSchedule(MAX, MIN, warmup_steps=W)
    for k in range(1, len(ENDS)):
        steps = range(ENDS[k - 1] + 1, ENDS[k] + 1)
        lrs = [inf.lr_at(s, ENDS) for s in steps]
        assert lrs[0] == CONST and max(lrs) <= CONST
        assert lrs[-1] == pytest.approx(MIN)
        # the baseline re-warms to the peak in every task
        assert max(rep.lr_at(s, ENDS) for s in steps) == pytest.approx(MAX)


def test_repeated_cosine_closed_form():
    rep = RepeatedCosineSchedule(MAX, MIN, warmup_steps=W)
    start, end = 100, 199
    assert rep.lr(start, start, end) == 0.0
    assert rep.lr(start + W, start, end) == pytest.approx(MAX)
    mid = start + W + (end - start - W) / 2
    assert rep.lr(int(mid), start, end) == pytest.approx((MAX + MIN) / 2, abs=0.02)
    assert rep.lr(end, start, end) == pytest.approx(MIN)
    with pytest.raises(ValueError, match="after every known task"):
        rep.lr_at(300, ENDS)


def test_invalid_configs(inf):
    with pytest.raises(ValueError, match="min_lr <= const_lr"):
        InfiniteSchedule(1.0, 2.0, 0.1, 1, 1)
    with pytest.raises(ValueError, match="min_lr <= const_lr"):
        InfiniteSchedule(1.0, 0.5, 0.0, 1, 1)
    with pytest.raises(ValueError, match=">= 0"):
        InfiniteSchedule(1.0, 0.5, 0.1, -1, 1)
    with pytest.raises(ValueError, match="before the constant phase"):
        inf.lr(20, task_end_step=W + C + A - 1)
    with pytest.raises(ValueError, match="after task_end_step"):
        inf.lr(100, task_end_step=99)


def test_torch_adapter_sets_optimizer_lr(inf):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in range(2)]
    opt = torch.optim.SGD(groups, lr=123.0)
    sched = ScheduleLR(opt, inf, task_end_steps=ENDS[:1])
    seen = []
    for step in range(ENDS[1] + 1):
        assert opt.param_groups[0]["lr"] == opt.param_groups[1]["lr"]
        seen.append(opt.param_groups[0]["lr"])
        assert seen[-1] == pytest.approx(inf.lr_at(step, sched.task_end_steps))
        if step == 150:
            sched.add_task_end(ENDS[1])  # announced mid-task, before its annealing
        opt.step()
        sched.step()
    assert seen[0] == 0.0 and seen[W] == pytest.approx(MAX)
    assert seen[ENDS[0]] == pytest.approx(MIN) and seen[ENDS[0] + 1] == CONST
    assert seen[ENDS[1]] == pytest.approx(MIN)
    assert sched.task_end_steps == ENDS[:2]
