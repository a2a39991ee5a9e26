"""Runs logged to a real MLflow tracking server on loopback, read back with ``MlflowClient``.

One ``mlflow server`` (from :func:`server_command`) serves the module: it must listen on
127.0.0.1 only; a fake but realistic run folder (history, report, figures, checkpoint) is
logged to it, to the default local store, and to unreachable or broken stores.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from components.tracking import RunRecord, TrackingConfig, log_run
from components.tracking.params import MAX_PARAM_VALUE_LENGTH

pytestmark = pytest.mark.slow

HISTORY = [
    {"epoch": e, "train_loss": 2.0 / e, "val_loss": 1.5 / e, "val_accuracy": 0.3 * e, "stage": "t"}
    for e in (1, 2, 3)
]
HEADLINE = {"test_accuracy": 0.875, "best_epoch": 3, "recommended_explanation": "ig"}


@pytest.fixture
def server(mlflow_server):
    return mlflow_server


@pytest.fixture
def run_dir(tmp_path):
    """A finished run folder: resolved config, metrics, report + figures, best checkpoint."""
    run = tmp_path / "runs" / "pipeline" / "20260101-000000-abc123"
    (run / "figures").mkdir(parents=True)
    (run / "checkpoints" / "best").mkdir(parents=True)
    config = {"seed": 0, "train": {"lr": 0.001, "epochs": 3}, "data": {"path": "p" * 7000}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    test = {"task": "classification", "accuracy": 0.875, "nll": 0.4, "confusion_matrix": [[1]]}
    (run / "metrics.json").write_text(json.dumps({"test": test, "train": {"history": HISTORY}}))
    (run / "report.html").write_text("<html>report of abc123</html>")
    (run / "figures" / "learning_curves.png").write_bytes(b"\x89PNG fake")
    for name, content in (("model.safetensors", b"weights"), ("model.json", b"{}")):
        (run / "checkpoints" / "best" / name).write_bytes(content)
    (run / "checkpoints" / "best" / "state.pt").write_bytes(b"optimizer state")
    return run


def record(run_dir, **kwargs) -> RunRecord:
    model = run_dir / "checkpoints" / "best"
    return RunRecord("pipeline", run_dir, HISTORY, HEADLINE, model, **kwargs)


def test_the_server_listens_on_loopback_only(server, loopback):
    url, proc = server
    sockets = loopback.listening(os.getpgid(proc.pid))
    assert ("127.0.0.1", int(url.rsplit(":", 1)[1])) in sockets
    assert all(ip == "127.0.0.1" for ip, _ in sockets), sockets


def test_the_server_starts_no_job_consumers(server, loopback):
    # MLflow's default starts 8 job-consumer processes for GenAI jobs that tracking never submits
    url, proc = server
    running = loopback.commands(os.getpgid(proc.pid))
    assert any("mlflow" in c for c in running), running
    assert not [c for c in running if "huey" in c or "_job_runner" in c], running


def test_a_run_is_logged_and_reads_back(server, run_dir, tmp_path):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    url, _ = server
    warnings = []
    config = TrackingConfig(backend="mlflow", uri=url, experiment="t-pipeline")
    tracked = log_run(config, record(run_dir), tmp_path / "runs", warn=warnings.append)
    assert warnings == [] and tracked is not None
    assert tracked.how_to_open().startswith(f"{url}/#/experiments/")

    client = MlflowClient(url)
    run = client.get_run(tracked.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.params["train.lr"] == "0.001" and run.data.params["seed"] == "0"
    assert len(run.data.params["data.path"]) == MAX_PARAM_VALUE_LENGTH
    assert run.data.tags["sennflow.run_id"] == run_dir.name
    assert run.data.tags["sennflow.flow"] == "pipeline"
    assert run.data.tags["recommended_explanation"] == "ig"
    for key in ("train_loss", "val_loss", "val_accuracy"):
        points = client.get_metric_history(tracked.run_id, key)
        assert [(p.step, p.value) for p in points] == [(r["epoch"], r[key]) for r in HISTORY]
    assert run.data.metrics["test_accuracy"] == 0.875
    assert run.data.metrics["test_nll"] == 0.4 and run.data.metrics["best_epoch"] == 3
    assert "stage" not in run.data.metrics and "test_confusion_matrix" not in run.data.metrics

    model = {a.path for a in client.list_artifacts(tracked.run_id, "model")}
    assert model == {"model/model.safetensors", "model/model.json"}  # no pickled state
    got = download_artifacts(run_id=tracked.run_id, dst_path=str(tmp_path / "dl"), tracking_uri=url)
    assert (
        tmp_path / "dl" / "report" / "report.html"
    ).read_text() == "<html>report of abc123</html>"
    assert (tmp_path / "dl" / "report" / "figures" / "learning_curves.png").is_file()
    assert (tmp_path / "dl" / "model" / "model.safetensors").read_bytes() == b"weights"
    assert got == str(tmp_path / "dl")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert yaml.safe_load((tmp_path / "dl" / "run" / "config.yaml").read_text()) == saved


def test_a_sweep_logs_one_nested_run_per_trial(server, run_dir, tmp_path):
    from mlflow import MlflowClient

    url, _ = server
    trials = [
        {"trial": f"t{i}", "status": "done", "config": {"train.lr": lr}, "history": HISTORY[:i]}
        for i, lr in ((1, 0.01), (3, 0.001))
    ]
    trials.append({"trial": "t9", "status": "failed", "config": {"train.lr": 1.0}, "error": "x"})
    config = TrackingConfig(backend="mlflow", uri=url, experiment="t-sweep")
    sweep = RunRecord("sweep", run_dir, HISTORY, {"trials": 3}, None, trials=trials)
    tracked = log_run(config, sweep, tmp_path / "runs")

    client = MlflowClient(url)
    children = client.search_runs(
        [tracked.experiment_id], f"tags.mlflow.parentRunId = '{tracked.run_id}'"
    )
    by_name = {c.info.run_name: c for c in children}
    assert set(by_name) == {"t1", "t3", "t9"}
    assert by_name["t3"].data.params["train.lr"] == "0.001"
    points = client.get_metric_history(by_name["t3"].info.run_id, "val_loss")
    assert [p.step for p in points] == [1, 2, 3]
    assert by_name["t9"].info.status == "FAILED" and by_name["t1"].info.status == "FINISHED"
    assert client.get_run(tracked.run_id).data.metrics["trials"] == 3


def test_the_default_store_is_local_sqlite_under_the_run_root(run_dir, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "runs"
    tracked = log_run(TrackingConfig(backend="mlflow"), record(run_dir), root)
    assert tracked.uri == f"sqlite:///{root}/mlflow.db" and (root / "mlflow.db").is_file()
    assert "mlflow ui --backend-store-uri sqlite:///" in tracked.how_to_open()
    run = MlflowClient(tracked.uri).get_run(tracked.run_id)
    assert run.data.metrics["test_accuracy"] == 0.875
    assert list((root / "mlartifacts").rglob("model.safetensors"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing lands in the cwd


def test_an_unreachable_server_warns_once_and_returns_quickly(run_dir, tmp_path, loopback):
    uri = f"http://127.0.0.1:{loopback.free_port()}"  # nothing listens there
    warnings = []
    start = time.monotonic()
    tracked = log_run(
        TrackingConfig(backend="mlflow", uri=uri), record(run_dir), tmp_path, warnings.append
    )
    assert tracked is None and time.monotonic() - start < 10
    assert len(warnings) == 1 and uri in warnings[0] and "unreachable" in warnings[0]


def test_an_mlflow_error_while_logging_warns_once(run_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "not-a-folder"
    root.write_text("")  # the default store cannot be made under a file
    warnings = []
    tracked = log_run(TrackingConfig(backend="mlflow"), record(run_dir), root, warnings.append)
    assert tracked is None
    assert len(warnings) == 1 and str(root) in warnings[0] and str(run_dir) in warnings[0]
