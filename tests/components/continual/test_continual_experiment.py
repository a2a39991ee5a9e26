"""One continual experiment end to end (``run_continual``) on a stream the metrics treat
specially."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ray]


def test_a_stream_of_one_task_runs_and_its_headline_leaves_forgetting_out(
    ray_session, digits_dataset, caplog
):
    import logging

    from components.continual.config import ContinualConfig
    from components.continual.experiment import continual_headline, run_continual

    learner = {"epochs": 1, "warmup_steps": 1, "cooldown_steps": 1, "anneal_steps": 2}
    config = ContinualConfig(methods=("ncm",), num_tasks=1, learner=learner)
    with caplog.at_level(logging.INFO):
        result = run_continual(digits_dataset, config, logger=logging.getLogger("one-task"))
    assert result["methods"]["ncm"]["summary"]["forgetting"] is None  # one task: none defined
    assert "ncm: average accuracy" in caplog.text and "forgetting n/a (one task)" in caplog.text
    headline = continual_headline(result)
    assert set(headline) == {"ncm_average_accuracy"}
    assert headline["ncm_average_accuracy"] > 0.8  # NCM on all ten digits at once
