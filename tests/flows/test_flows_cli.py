"""The ``sennflow`` console script: help, and bad config or data exit 2 with a message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from flows.cli import main


def sennflow(*args: str, timeout: int = 300, env: dict | None = None):
    exe = shutil.which("sennflow") or sys.executable
    prefix = [] if exe.endswith("sennflow") else ["-m", "flows.cli"]
    return subprocess.run(
        [exe, *prefix, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


@pytest.fixture
def api_env(prefect_harness) -> dict:
    """The environment of a ``sennflow`` process that uses this session's Prefect server
    instead of starting a temporary one of its own (seconds saved per call)."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def test_run_help_lists_groups_options_and_defaults():
    proc = sennflow("run", "--help")
    assert proc.returncode == 0
    sources = "breast_cancer, csv, digits, image_folder, parquet, parts, synthetic, wine"
    assert f"data        {sources}" in proc.stdout
    assert "model.name=proto_ae" in proc.stdout
    assert "train.num_workers=1" in proc.stdout


def test_show_config_applies_overrides(capsys):
    assert main(["run", "--show-config", "model=mlp", "train.epochs=5"]) == 0
    out = capsys.readouterr().out
    assert "name: mlp" in out and "epochs: 5" in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochz=3", "Could not override 'train.epochz'"),
        ("model=nope", "Could not find 'model/nope'"),
        ("train.epochs=-1", "train.epochs=-1"),
        ("train.optimizer=lbfgs", "train.optimizer='lbfgs'"),
        ("data=csv", "data.path"),
        ("train.placement_strategy=STRICT", "train.placement_strategy='STRICT'"),
        ("ray.storage_path=ftp://host/x", "ray.storage_path='ftp://host/x'"),
        ("ray.storage_path=s3://", "no bucket"),
        ("tracking=bogus", "tracking"),
    ],
)
def test_bad_config_exits_2_naming_the_key(override, message, capsys):
    assert main(["run", override]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.prefect
def test_missing_data_file_exits_2_and_names_the_path(tmp_path, api_env):
    missing = tmp_path / "nope.csv"
    proc = sennflow(
        "run",
        "data=csv",
        f"data.path={missing}",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={tmp_path / 'cache'}",
        env=api_env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "sennflow: error:" in proc.stderr and str(missing) in proc.stderr


def test_no_command_prints_usage_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: sennflow" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.ray
def test_bad_resume_checkpoint_exits_2_and_keeps_the_run_folder(tmp_path, api_env, ray_session):
    import ray

    bogus = tmp_path / "not-a-checkpoint"
    bogus.mkdir()
    proc = sennflow(
        "run",
        "experiment=tiny",
        f"train.resume_from={bogus}",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={tmp_path / 'cache'}",
        f"ray.address={ray.get_runtime_context().gcs_address}",  # no Ray of its own to start
        env=api_env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"checkpoint {bogus} is incomplete" in proc.stderr
    (run_dir,) = (tmp_path / "runs" / "pipeline").iterdir()
    assert (run_dir / "config.yaml").is_file() and (run_dir / "meta.json").is_file()


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.ray
def test_a_model_parameter_that_does_not_exist_exits_2(tmp_path, api_env):
    proc = sennflow(
        "run",
        "experiment=tiny",
        "+model.params.num_prototypez=3",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={tmp_path / 'cache'}",
        env=api_env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot build model 'proto_ae'" in proc.stderr and "num_prototypez" in proc.stderr


def _diverged():
    from components.training.fit import DivergedError

    nan = float("nan")
    return DivergedError(3, "joint", {"train_loss": nan, "val_loss": nan}, 1e6, "kept in x")


def _all_trials_failed():
    from components.search.tune_sweep import SweepFailedError

    trials = [{"trial": f"fit_trial_{i}", "status": "failed", "error": "boom"} for i in (0, 1)]
    return SweepFailedError(trials, "runs/sweep/s/sweep")


@pytest.mark.prefect
def test_a_run_that_failed_is_one_message_and_exit_1(prefect_harness, capfd):
    # One test for both errors: Prefect's console handler keeps the stream it first wrote to.
    import contextlib

    from prefect import flow, task

    from flows.cli import _run_flow

    for error, message in [
        (_diverged, "training diverged at epoch 3 (stage 'joint')"),
        (_all_trials_failed, "every trial of the sweep failed (2 trials;"),
    ]:

        @task
        def stage(error=error):
            raise error()

        @flow
        def run(stage=stage):
            stage()

        assert _run_flow(run, contextlib.nullcontext()) == 1
        out, err = capfd.readouterr()
        assert "Traceback" not in out + err
        assert (out + err).count(message) == 1 and f"sennflow: error: {message}" in err
