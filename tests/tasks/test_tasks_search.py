"""The sweep task's trial logger: each finished trial's value as the sweep selects on it."""

from __future__ import annotations

import pytest
from prefect.logging import disable_run_logger
from ray import tune

from tasks.progress import trial_listener
from tasks.search import TrialLogger


def _three_reports(config):
    for loss in (0.5, 0.3, 0.4):
        tune.report({"val_loss": loss * config["x"]})


@pytest.mark.ray
@pytest.mark.parametrize(("over_epochs", "expected"), [(True, [0.3, 0.6]), (False, [0.4, 0.8])])
def test_a_finished_trial_is_reported_with_its_best_epoch_or_its_last(
    ray_session, tmp_path, over_epochs, expected
):
    events: list[dict] = []
    logger = TrialLogger(2, "val_loss", "min", over_epochs)
    with disable_run_logger(), trial_listener(events.append):
        tune.Tuner(
            _three_reports,
            param_space={"x": tune.grid_search([1.0, 2.0])},
            tune_config=tune.TuneConfig(max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=[logger], verbose=0),
        ).fit()
    assert [e["value"] for e in events] == pytest.approx(expected)
    assert [e["best"] for e in events] == pytest.approx([expected[0]] * 2)  # the lower loss
    assert [(e["done"], e["failed"]) for e in events] == [(1, 0), (2, 0)]
    assert all((e["metric"], e["mode"], e["total"]) == ("val_loss", "min", 2) for e in events)


def test_a_resumed_sweeps_events_count_the_trials_it_ended_before():
    from types import SimpleNamespace

    logger = TrialLogger(5, "val_accuracy", "max")
    logger.best = {"t0": 0.91, "t1": 0.95, "t3": 0.5}  # as pickled with the stopped sweep
    trials = [
        SimpleNamespace(trial_id="t0", status="TERMINATED"),
        SimpleNamespace(trial_id="t1", status="ERROR"),  # failed after reporting 0.95
        SimpleNamespace(trial_id="t2", status="TERMINATED"),  # no value of the metric
        SimpleNamespace(trial_id="t3", status="RUNNING"),
        SimpleNamespace(trial_id="t4", status="PENDING"),
    ]
    events: list[dict] = []
    with disable_run_logger(), trial_listener(events.append):
        logger.on_trial_result(1, trials, trials[3], {"val_accuracy": 0.93})
        logger.on_trial_complete(2, trials, trials[3])
    (event,) = events
    assert (event["done"], event["failed"], event["best"], event["value"]) == (4, 1, 0.93, 0.93)


def test_a_trial_handed_a_clones_result_is_reported_with_its_own():
    # A PBT exploit at the final perturbation sets the trial's last result to the clone's.
    from types import SimpleNamespace

    events: list[dict] = []
    logger = TrialLogger(1, "val_accuracy", "max", over_epochs=False)
    trial = SimpleNamespace(trial_id="t0", last_result=None)
    with disable_run_logger(), trial_listener(events.append):
        logger.on_trial_result(1, [], trial, {"training_iteration": 1, "val_accuracy": 0.9})
        logger.on_trial_result(2, [], trial, {"training_iteration": 2, "val_accuracy": 0.8})
        trial.last_result = {"training_iteration": 2, "val_accuracy": 0.99}  # the clone's
        logger.on_trial_complete(3, [], trial)
    assert events[0]["value"] == 0.8
    assert logger.last["t0"] == {"training_iteration": 2, "val_accuracy": 0.8}


def test_a_logger_pickled_by_an_older_version_resumes_with_the_defaults():
    import pickle

    logger = TrialLogger(5, "val_accuracy", "max")
    assert pickle.loads(pickle.dumps(logger)).__dict__ == logger.__dict__
    old = TrialLogger.__new__(TrialLogger)
    old.__setstate__({"total": 3})  # what a sweep interrupted before 2026-12-06 holds
    assert (old.total, old.metric, old.mode, old.best, old.last) == (3, "val_loss", "min", {}, {})
