"""The pipeline flow with ``tracking=mlflow`` against a real MLflow server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.config import ConfigError
from flows.pipeline import PipelineOptions, pipeline

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def mlflow_url(mlflow_server):
    return mlflow_server[0]


def test_a_tracked_pipeline_logs_the_run_folders_metrics(
    mlflow_url, prefect_harness, ray_session, tmp_path
):
    from mlflow import MlflowClient

    result = pipeline(
        overrides=[
            "experiment=tiny",
            f"run.root={tmp_path / 'runs'}",
            f"run.cache_dir={tmp_path / 'cache'}",
            f"tracking.experiment=flow-{tmp_path.name}",
        ],
        options=PipelineOptions(tracking="mlflow", tracking_uri=mlflow_url),
    )
    run_dir = Path(result.run_dir)
    client = MlflowClient(mlflow_url)
    experiment = client.get_experiment_by_name(f"flow-{tmp_path.name}")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["sennflow.run_id"] == run_dir.name and run.info.status == "FINISHED"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "nll", "ece"):
        assert run.data.metrics[f"test_{key}"] == pytest.approx(metrics["test"][key])
    history = metrics["train"]["history"]
    points = client.get_metric_history(run.info.run_id, "val_loss")
    assert [(p.step, p.value) for p in points] == [(r["epoch"], r["val_loss"]) for r in history]
    assert run.data.params["train.epochs"] == str(len(history))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/model.safetensors" in artifacts


def test_a_bad_tracking_config_fails_before_any_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="tracking.uri"):
        pipeline.fn(
            overrides=[f"run.root={tmp_path / 'runs'}", "tracking=mlflow", "tracking.uri=7"]
        )
    assert not (tmp_path / "runs").exists()


def test_the_cli_exits_2_on_a_bad_tracking_group(tmp_path, capsys):
    from sennflow.cli import main

    assert main(["run", "tracking=bogus", f"run.root={tmp_path / 'runs'}"]) == 2
    assert "tracking/bogus" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_ui_forms_turn_tracking_on():
    from pydantic import ValidationError

    from flows.sweep import SweepOptions

    options = SweepOptions(tracking="mlflow", tracking_uri="http://127.0.0.1:5000")
    assert options.to_overrides() == ["tracking=mlflow", "tracking.uri=http://127.0.0.1:5000"]
    with pytest.raises(ValidationError, match="tracking"):
        PipelineOptions(tracking="wandb")
