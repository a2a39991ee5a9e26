"""The nightly sweep history: the Parquet table grows by a row a night (and by a column per new
metric), and the accuracy-drop alert fires exactly past ``alert_drop``, never on the first night."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.search.history import (
    HISTORY_FILE,
    HistoryError,
    Night,
    append_night,
    drop_alert,
    metric_names,
    read_history,
    record_night,
)

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def night(day: int, accuracy: float | None = 0.75, **metrics) -> Night:
    headline = {"trials": 4, "best_val_loss": 0.5, "recommended_explanation": "gradients"}
    if accuracy is not None:
        headline["test_accuracy"] = accuracy
    return Night(
        run_id=f"night-{day}",
        method="asha",
        model="mlp",
        dataset="digits",
        dataset_fingerprint="abc123",
        best_config={"train.lr": 0.003 * day, "model.dropout": 0.1},
        headline=headline | metrics,
        time=START + timedelta(days=day),
    )


def test_nights_append_and_a_new_metric_adds_a_column_null_on_earlier_nights(tmp_path):
    append_night(tmp_path, night(1))
    append_night(tmp_path, night(2, test_ece=0.125), alert="dropped")
    rows = read_history(tmp_path)
    assert [r["run_id"] for r in rows] == ["night-1", "night-2"]
    assert [r["test_ece"] for r in rows] == [None, 0.125]
    assert [r["alert"] for r in rows] == [None, "dropped"]
    assert json.loads(rows[1]["best_config"]) == {"train.lr": 0.006, "model.dropout": 0.1}
    assert json.loads(rows[0]["headline"])["recommended_explanation"] == "gradients"
    assert rows[0]["time"] == START + timedelta(days=1)
    schema = pq.read_schema(tmp_path / HISTORY_FILE)
    assert schema.field("trials").type == pa.float64()  # numbers are metric columns
    assert "recommended_explanation" not in schema.names  # text stays in the headline JSON
    assert metric_names(rows) == ["test_accuracy", "trials", "best_val_loss", "test_ece"]


def test_a_night_run_again_replaces_its_row(tmp_path):
    append_night(tmp_path, night(1))
    append_night(tmp_path, night(2, accuracy=0.5))
    rows = append_night(tmp_path, night(2, accuracy=0.625))
    assert [(r["run_id"], r["test_accuracy"]) for r in rows] == [
        ("night-1", 0.75),
        ("night-2", 0.625),
    ]


def test_the_alert_fires_exactly_past_the_drop_and_names_the_best_night(tmp_path):
    earlier = [append_night(tmp_path, night(1, 0.75)), append_night(tmp_path, night(2, 0.5))][-1]
    assert drop_alert(earlier, night(3, 0.5), alert_drop=0.25) is None  # a drop of exactly 0.25
    message = drop_alert(earlier, night(3, 0.4921875), alert_drop=0.25)
    assert message == (
        "best test_accuracy 0.4922 of sweep night-3 is 0.2578 below the previous best 0.7500 "
        "(sweep night-1), more than search.alert_drop=0.25"
    )
    assert drop_alert(earlier, night(3, 0.0), alert_drop=None) is None
    # a night run again is compared with the other nights, not with its own earlier row
    assert "previous best 0.5000 (sweep night-2)" in drop_alert(earlier, night(1, 0.0), 0.25)
    assert drop_alert(earlier[:1], night(1, 0.0), alert_drop=0.25) is None


def test_the_first_night_never_alerts_and_the_verdict_is_kept_in_its_row(tmp_path):
    rows, alert = record_night(tmp_path, night(1, 0.0), alert_drop=0.0)
    assert alert is None and rows[0]["alert"] is None
    rows, alert = record_night(tmp_path, night(2, 0.25), alert_drop=0.5)
    assert alert is None  # up from 0.0
    rows, alert = record_night(tmp_path, night(3, 0.125), alert_drop=0.0)
    assert alert.startswith("best test_accuracy 0.1250 of sweep night-3 is 0.1250 below")
    assert [r["alert"] for r in read_history(tmp_path)] == [None, None, alert]


def test_an_unreadable_history_names_the_file(tmp_path):
    (tmp_path / HISTORY_FILE).write_text("not parquet")
    with pytest.raises(HistoryError, match=rf"cannot read the sweep history {tmp_path}/"):
        append_night(tmp_path, night(1))
