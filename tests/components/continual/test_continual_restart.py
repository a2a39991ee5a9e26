"""A learner actor killed between tasks restarts from its last completed task, and the run ends
exactly as an uninterrupted stream in this process does."""

from __future__ import annotations

import numpy as np
import pytest

from components.continual.experiment import run_methods
from components.continual.learners import LearnerConfig
from components.continual.scenarios import class_incremental
from components.continual.stream import create_learner, learn_stream

pytestmark = [pytest.mark.ray]

CONFIG = LearnerConfig(
    hidden_dim=32, embedding_dim=16, epochs=1, warmup_steps=1, cooldown_steps=1, anneal_steps=2
)


def test_killed_learner_restarts_from_its_last_task(ray_session, digits):
    import ray

    x, y, x_test, y_test = (a.reshape(len(a), -1) if a.ndim > 1 else a for a in digits)
    data = (x, y, x_test, y_test)
    tasks = class_incremental(y, 5, seed=0)
    killed = []

    def kill_after_task_1(method, task, handle):
        if task == 1 and not killed:
            ray.kill(handle, no_restart=True)
            killed.append(handle)

    # joint keeps every task's data: that memory must survive the restart too.
    result = run_methods(
        data, tasks, {"joint": CONFIG}, max_restarts=1, after_task=kill_after_task_1
    )["joint"]
    assert killed and [r["task"] for r in result["restarts"]] == [2]
    assert "ActorDiedError" in result["restarts"][0]["reason"]
    R, records = learn_stream(create_learner("joint", CONFIG), data, tasks)
    np.testing.assert_array_equal(np.array(result["R"]), R)
    assert [r["steps"] for r in result["records"]] == [r["steps"] for r in records]
    # No task learned twice: one learning rate per optimizer step of the stream.
    assert len(result["lrs"]) == records[-1]["steps"]


def test_a_learner_that_keeps_dying_fails_the_run_naming_the_limit():
    from ray.exceptions import ActorDiedError

    from components.continual.experiment import _Learners

    learners = _Learners(lambda method, state: object(), ["ncm"], max_restarts=0)
    with pytest.raises(RuntimeError, match=r"'ncm'.*died 1 times \(continual.max_restarts=0\)"):
        learners.restart("ncm", 3, ActorDiedError())
