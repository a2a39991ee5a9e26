"""The sweep's own copy of every trial's rows (components/search/trial_rows.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray import tune

from components.search.trial_rows import TrialRows, latest_per_iteration, read_rows, rows_path


def _three_reports(config):
    for epoch in (1, 2, 3):
        tune.report({"epoch": epoch, "val_loss": config["x"] / epoch, "ignored": "not kept"})


@pytest.mark.ray
def test_every_reported_row_is_appended_as_the_driver_receives_it(ray_session, tmp_path):
    results = tune.Tuner(
        _three_reports,
        param_space={"x": tune.grid_search([1.0, 6.0])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=[TrialRows()], verbose=0),
    ).fit()
    for result in results:
        rows = read_rows(result.path)
        # beside the experiment, whose folders are all trials
        assert rows_path(result.path).parent == Path(results.experiment_path + "-rows")
        assert [(r["training_iteration"], r["epoch"]) for r in rows] == [(1, 1), (2, 2), (3, 3)]
        expected = [result.config["x"] / epoch for epoch in (1, 2, 3)]
        assert [r["val_loss"] for r in rows] == pytest.approx(expected)
        assert all("ignored" not in r for r in rows)


def test_a_line_cut_short_by_a_kill_is_skipped_and_a_reported_again_iteration_replaces_the_first(
    tmp_path,
):
    trial = tmp_path / "sweep" / "fit_trial_00000"
    path = rows_path(trial)
    path.parent.mkdir(parents=True)
    first = [{"training_iteration": i, "epoch": i, "val_loss": 1.0 / i} for i in (1, 2, 3)]
    # killed while writing iteration 3; the resumed trial restarts from its iteration-1 checkpoint
    again = [{"training_iteration": i, "epoch": i, "val_loss": 0.5 / i} for i in (2, 3)]
    text = "".join(json.dumps(r) + "\n" for r in first)[:-9] + "\n"
    path.write_text(text + "".join(json.dumps(r) + "\n" for r in again))
    rows = read_rows(trial)
    assert rows == first[:2] + again
    assert latest_per_iteration(rows) == [first[0], *again]
    assert read_rows(tmp_path / "sweep" / "fit_trial_00001") is None


class _Grid(list):
    """Tune's ResultGrid as ``_outcome`` reads it: the results and the best one."""

    def get_best_result(self, **_):
        return self[0]


def test_a_trial_whose_tune_result_is_a_clones_is_reported_by_its_own_last_report(tmp_path):
    # A PBT exploit at the last perturbation hands the trial the clone's config and result, as
    # Tune's last result, though the trial never trains on them: its row, and the best trial's
    # config and numbers where it is the best, keep its own.
    from ray.air import Result

    from components.search.sweep_config import SweepConfig
    from components.search.tune_sweep import _outcome

    trial = tmp_path / "sweep" / "fit_trial_00001"
    trial.mkdir(parents=True)
    own = {"train.lr": 3e-4}
    reports = [
        {"training_iteration": i, "epoch": i, "val_loss": 2.3 - 0.01 * i, "config": own}
        for i in (1, 2)
    ]
    rows_path(trial).parent.mkdir()
    rows_path(trial).write_text("".join(json.dumps(r) + "\n" for r in reports))
    clone = {"training_iteration": 2, "val_loss": 1.89, "config": {"train.lr": 1.9e-3}}
    result = Result(metrics=clone, checkpoint=None, error=None, path=str(trial))
    outcome = _outcome(_Grid([result]), str(trial.parent), SweepConfig(method="pbt"), 2, "last")
    (row,) = outcome.trials
    assert outcome.best_trial == "fit_trial_00001"
    assert outcome.best_config == own and outcome.best_metrics["val_loss"] == pytest.approx(2.28)
    assert row["config"] == own
    assert row["val_loss"] == pytest.approx(2.28) and row["epochs"] == 2
    assert [h["val_loss"] for h in row["history"]] == pytest.approx([2.29, 2.28])


@pytest.mark.parametrize(("scope", "epoch", "val_loss"), [("all", 2, 0.3), ("last", 3, 0.4)])
def test_the_best_trials_numbers_are_those_of_the_report_it_was_selected_on(
    tmp_path, scope, epoch, val_loss
):
    # Over all reports (scope all) the trial was selected for its epoch-2 val loss, not its last.
    from ray.air import Result

    from components.search.best import search_summary
    from components.search.sweep_config import SweepConfig
    from components.search.tune_sweep import _outcome

    trial = tmp_path / "sweep" / "fit_trial_00000"
    trial.mkdir(parents=True)
    rows_path(trial).parent.mkdir()
    reports = [
        {"training_iteration": i, "epoch": i, "val_loss": loss, "config": {"train.lr": 0.01}}
        for i, loss in ((1, 0.5), (2, 0.3), (3, 0.4))
    ]
    rows_path(trial).write_text("".join(json.dumps(r) + "\n" for r in reports))
    last = {"training_iteration": 3, "epoch": 3, "val_loss": 0.4, "config": {"train.lr": 0.01}}
    result = Result(metrics=last, checkpoint=None, error=None, path=str(trial))
    outcome = _outcome(_Grid([result]), str(trial.parent), SweepConfig(), 3, scope)
    assert outcome.best_metrics["val_loss"] == pytest.approx(val_loss)
    best = search_summary("asha", outcome)["best"]
    assert (best["epoch"], best["val_loss"]) == (epoch, pytest.approx(val_loss))
