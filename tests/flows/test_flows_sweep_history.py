"""The sweep's nightly history settings, and its final task failing the flow run on an accuracy
drop (what a Prefect automation fires on), after the history and its page are written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prefect import flow

from components.search.history import AccuracyDropAlert, Night, read_history
from flows.config import ConfigError, to_search_settings
from flows.sweep import SweepOptions, compose_sweep
from tasks.history import history_task


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["search.alert_drop=0.1"], "search.alert_drop needs search.history=true"),
        (["search.history=true", "search.alert_drop=-0.1"], "must be null or a number >= 0"),
        (["search.history=true", "search.alert_drop=lots"], "got 'lots'"),
        (["search.history=maybe"], "search.history must be true or false, got 'maybe'"),
        (
            ["search.history=true", "search.alert_drop=0.1", "search.retrain=false"],
            "search.alert_drop needs search.retrain=true",
        ),
    ],
)
def test_bad_history_settings_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        to_search_settings(compose_sweep(overrides))


def test_the_nightly_options_turn_the_history_and_its_alert_on():
    search = to_search_settings(compose_sweep([]))
    assert (search.history, search.alert_drop) == (False, None)  # ad-hoc sweeps keep none
    options = SweepOptions(history=True, alert_drop=0.02)
    search = to_search_settings(compose_sweep(options.to_overrides()))
    assert (search.history, search.alert_drop) == (True, 0.02)


def _night(day: int, accuracy: float) -> Night:
    return Night(
        run_id=f"sweep-{day}",
        method="asha",
        model="mlp",
        dataset="digits",
        dataset_fingerprint="f" * 64,
        best_config={"train.lr": 0.01},
        headline={"test_accuracy": accuracy},
        time=datetime(2026, 12, 1, 2, tzinfo=UTC) + timedelta(days=day),
    )


@flow(name="nightly-history-check")
def _nightly(folder, accuracy: float) -> None:
    history_task(folder, _night(len(read_history(folder)), accuracy), 0.125)


def test_a_drop_past_alert_drop_fails_the_history_task_and_the_flow_run(prefect_harness, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    assert _nightly(tmp_path, 0.875, return_state=True).is_completed()
    state = _nightly(tmp_path, 0.625, return_state=True)
    assert state.is_failed()
    with pytest.raises(AccuracyDropAlert, match="0.2500 below the previous best 0.8750"):
        state.result()
    with get_client(sync_client=True) as client:
        ids = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        (task_run,) = client.read_task_runs(flow_run_filter=ids)
    assert (task_run.name.split("-")[:2], task_run.state.type.value) == (
        ["sweep", "history"],
        "FAILED",
    )
    # the night is in the history, and on its page, before the task fails
    assert [row["alert"] is not None for row in read_history(tmp_path)] == [False, True]
    assert "sweep-1" in (tmp_path / "history.html").read_text()
