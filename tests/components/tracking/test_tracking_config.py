"""Tracking settings, MLflow params within MLflow's limits, and the server command (no server)."""

from __future__ import annotations

import sys

import pytest

from components.tracking.config import INSTALL_HINT, TrackingConfig
from components.tracking.params import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    TRUNCATED,
    numeric,
    safe_key,
    to_params,
)
from components.tracking.server import server_command
from components.tracking.store import default_uri
from flows.config import ConfigError, compose, to_settings


def test_params_are_dotted_text_within_mlflow_limits():
    params = to_params(
        {
            "train": {"lr": 0.001, "epochs": 2, "use_gpu": False},
            "model": {"params": {"dims": [8, 4], "genotype": None}},
            "data": {"path": "x" * 7000},
            "bad key/with#chars": 1,
        }
    )
    assert params["train.lr"] == "0.001"
    assert params["train.use_gpu"] == "false"
    assert params["model.params.dims"] == "[8, 4]"
    assert params["model.params.genotype"] == "null"
    assert len(params["data.path"]) == MAX_PARAM_VALUE_LENGTH
    assert params["data.path"].endswith(TRUNCATED)
    assert params["bad key_with_chars"] == "1"


def test_long_keys_are_cut_and_stay_distinct():
    a, b = safe_key("k" * 300 + "a"), safe_key("k" * 300 + "b")
    assert len(a) == len(b) == MAX_KEY_LENGTH
    assert a != b


def test_only_finite_numbers_become_metrics():
    values = {"acc": 0.5, "n": 3, "ok": True, "task": "x", "nan": float("nan"), "l": [1]}
    assert numeric({**values, "nested": {"inf": float("inf"), "ece": 0.1}}, prefix="test_") == {
        "test_acc": 0.5,
        "test_n": 3.0,
        "test_nested.ece": 0.1,
    }


def test_tracking_is_off_by_default_and_mlflow_is_chosen_by_group():
    assert not to_settings(compose([])).tracking.enabled
    tracking = to_settings(compose(["tracking=mlflow", "tracking.uri=http://127.0.0.1:5000"]))
    assert tracking.tracking == TrackingConfig(backend="mlflow", uri="http://127.0.0.1:5000")
    assert tracking.tracking.experiment_for("sweep") == "sennflow-sweep"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["tracking=bogus"], "tracking/bogus"),
        (["tracking=mlflow", "tracking.uri=5"], "tracking.uri='5'"),
        (["tracking=mlflow", "tracking.uri=/no/scheme"], "tracking.uri="),
        (["tracking=mlflow", "tracking.timeout_s=0"], "tracking.timeout_s=0"),
        (["tracking.backend=wandb"], "tracking.backend="),
    ],
)
def test_bad_tracking_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        to_settings(compose(overrides))


def test_tracking_without_mlflow_installed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # find_spec then reports it missing
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[tracking\]'"):
        to_settings(compose(["tracking=mlflow"]))
    assert TrackingConfig().backend == "none"  # tracking off still works without MLflow
    assert "[tracking]" in INSTALL_HINT


def test_server_command_binds_loopback_and_serves_artifacts(tmp_path):
    argv = server_command(tmp_path, port=5123)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "5123"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow.db"
    assert argv[argv.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert "--serve-artifacts" in argv


def test_default_store_is_sqlite_under_the_run_root(tmp_path):
    assert default_uri(tmp_path / "runs") == f"sqlite:///{tmp_path}/runs/mlflow.db"
