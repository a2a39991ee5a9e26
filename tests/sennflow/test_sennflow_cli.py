"""The ``sennflow`` console script: help from the composed config, one composition per command,
and bad config or data exit 2 with a message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from sennflow.cli import main


def sennflow(*args: str, timeout: int = 300, env: dict | None = None):
    exe = shutil.which("sennflow") or sys.executable
    prefix = [] if exe.endswith("sennflow") else ["-m", "sennflow"]
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


def test_run_help_lists_every_key_of_the_composed_config_with_its_default(capsys):
    import yaml
    from omegaconf import OmegaConf

    from flows.config import compose

    with pytest.raises(SystemExit) as exit:
        main(["run", "--help"])
    assert exit.value.code == 0
    options = capsys.readouterr().out.split("defaults shown):\n", 1)[1].split("\n\n", 1)[0]
    listed = dict(line.strip().split("=", 1) for line in options.splitlines())
    config = flat(OmegaConf.to_container(compose([]), resolve=False))
    assert listed.keys() == config.keys()
    wrong = {k: v for k, v in listed.items() if yaml.safe_load(v) != config[k]}
    assert not wrong, f"printed defaults that the composed config does not hold: {wrong}"


def flat(values: dict, prefix: str = "") -> dict:
    """``{dotted key: value}`` of the leaves of nested ``values``."""
    leaves = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            leaves |= flat(value, f"{prefix}{key}.")
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


@pytest.fixture
def compositions(monkeypatch) -> list:
    """The overrides of every Hydra composition from now on (counted where Hydra composes, so
    no caller of ``flows.config.compose`` is missed)."""
    import hydra

    calls, compose = [], hydra.compose

    def counted(*args, **kwargs):
        calls.append(kwargs.get("overrides"))
        return compose(*args, **kwargs)

    monkeypatch.setattr(hydra, "compose", counted)
    return calls


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["run", "model=mlp"],
        ["sweep"],
        ["sweep", "search=stn"],
        ["federated"],
        ["continual"],
    ],
    ids=" ".join,
)
def test_show_config_composes_the_config_once(command, compositions, capsys):
    assert main([command[0], "--show-config", *command[1:]]) == 0
    assert "seed: 0" in capsys.readouterr().out
    assert len(compositions) == 1, compositions


@pytest.mark.prefect
def test_a_run_composes_the_config_once(prefect_harness, tmp_path, compositions, capsys):
    # Through the flow up to building the model, which fails after ingest (a whole run would
    # cost 20 s more, for stages that take the typed settings, not the config).
    runs = tmp_path / "runs"
    args = ["experiment=tiny", f"run.root={runs}", f"run.cache_dir={tmp_path / 'cache'}"]
    assert main(["run", *args, "+model.params.num_prototypez=3"]) == 2
    err = capsys.readouterr().err  # one message naming the model and the parameter
    assert "cannot build model 'proto_ae'" in err and "num_prototypez" in err
    assert len(compositions) == 1, compositions
    assert any((tmp_path / "cache").iterdir()) and not runs.exists()


def test_show_config_applies_overrides(capsys):
    assert main(["run", "--show-config", "model=mlp", "train.epochs=5"]) == 0
    out = capsys.readouterr().out
    assert "name: mlp" in out and "epochs: 5" in out


def test_overrides_may_stand_on_both_sides_of_a_flag(capsys):
    # argparse alone takes the overrides before the flag and refuses those after it
    assert main(["run", "model=mlp", "--show-config", "train.epochs=7", "train.epochs=9"]) == 0
    out = capsys.readouterr().out
    assert "name: mlp" in out and "epochs: 9" in out  # in the order written: the last one wins
    with pytest.raises(SystemExit) as exit:
        main(["run", "model=mlp", "--bogus", "train.epochs=7"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().endswith("unrecognized arguments: --bogus")
    with pytest.raises(SystemExit):
        main(["stack", "up", "extra"])  # a command without overrides takes no extra words
    assert "unrecognized arguments: extra" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochz=3", "train has no key 'epochz'; did you mean train.epochs?"),
        ("model=nope", "model=nope: there is no conf/model/nope.yaml"),
        ("train.epochs=-1", "train.epochs=-1 (must be >= 1)"),
        ("train.optimizer=lbfgs", "train.optimizer='lbfgs' (must be one of adam, adamw, sgd)"),
        ("data=csv", "data.path"),
        (
            "train.placement_strategy=STRICT",
            "placement_strategy='STRICT' (must be one of PACK, SPREAD)",
        ),
        ("ray.storage_path=ftp://host/x", "ray.storage_path='ftp://host/x'"),
        ("ray.storage_path=s3://", "no bucket"),
        ("tracking=bogus", "tracking"),
        ("seed=abc", "seed='abc': expected an integer"),  # was a ValueError traceback
    ],
)
@pytest.mark.prefect
def test_bad_config_exits_2_naming_the_key(override, message, prefect_harness, capsys):
    assert main(["run", override]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["run", "train.epochz=3"], "train has no key 'epochz'"),
        (["run", "train.epochs=-1"], "train.epochs=-1 (must be >= 1)"),
        (["run", "--resume", "run.id=nowhere"], "/nonexistent/runs/pipeline/nowhere"),
        (["sweep", "search.metricc=val_loss"], "search has no key 'metricc'"),
        (["prune", "rounds=0"], "prune.rounds=0"),
        (["federated", "federated.rounds=0"], "rounds"),
        (["pretrain", "ssl=nope"], "ssl=nope"),
        (["run", "data=csv", "data.path=/nonexistent/my.csv"], "/nonexistent/my.csv: file does"),
        (
            ["run", "train.resume_from=/nonexistent/checkpoints/last"],
            "checkpoint folder /nonexistent/checkpoints/last does not exist",
        ),
        # nothing listens there: Ray would retry it for ever
        (["run", "ray.address=127.0.0.1:1"], "ray.address=127.0.0.1:1: no Ray cluster answers"),
        (
            ["run", "model=protopnet", "+model.params.pretrained=/nonexistent/resnet18.pth"],
            "no weights file at /nonexistent/resnet18.pth",
        ),
        (
            ["sweep", "data=image_folder", "data.path=/nonexistent/photos"],
            "/nonexistent/photos: folder does not exist",
        ),
        (["explain", "/nonexistent/runs/pipeline/a"], "is not a finished run folder"),
        (["predict", "/nonexistent/runs/pipeline/a", "new.csv"], "is not a finished run folder"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
@pytest.mark.prefect
def test_a_bad_config_exits_2_before_a_flow_run_starts(argv, names, flow_run_count, capsys):
    # Refused before the Prefect server starts: no failed flow run in the UI, no waiting for it.
    before = flow_run_count()
    assert main([*argv, "run.root=/nonexistent/runs"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("sennflow: error: ") and names in line, line
    assert flow_run_count() == before


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


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["predict"], "run_dir, input"),
        (["predict", "runs/pipeline/a"], "input"),
        (["explain"], "run_dir"),
    ],
)
def test_a_missing_argument_names_only_what_is_required(argv, missing, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith(f"error: the following arguments are required: {missing}")


@pytest.mark.prefect
def test_bad_resume_checkpoint_exits_2_before_it_writes_anything(tmp_path, api_env):
    bogus = tmp_path / "not-a-checkpoint"
    bogus.mkdir()
    proc = sennflow(
        "run",
        "experiment=tiny",
        f"train.resume_from={bogus}",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={tmp_path / 'cache'}",
        env=api_env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"sennflow: error: checkpoint {bogus} is incomplete: missing model.safetensors, "
        "model.json, state.pt"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-checkpoint"]  # no run, no cache


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

    from sennflow.cli import _run_flow

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
