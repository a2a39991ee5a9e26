"""Runs that stop half-way: ``status.json``, SIGINT/SIGTERM, a SIGKILLed run resumed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.config import ConfigError
from flows.run_folder import (
    check_resumable,
    read_status,
    start_status,
    update_status,
    with_run_status,
)
from sennflow.cli import _run_flow, main


def _run_folder(tmp_path, run_id: str = "r1") -> Path:
    run_dir = tmp_path / "runs" / "pipeline" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 0\n")
    return run_dir


def test_status_records_each_epoch_and_the_error_of_a_failed_run(tmp_path):
    from tasks.progress import notify_epoch

    run_dir = _run_folder(tmp_path)

    @with_run_status
    def flow():
        start_status(run_dir, "pipeline")
        assert read_status(run_dir)["state"] == "running"
        notify_epoch({"epoch": 1})
        notify_epoch({"epoch": 2})
        raise ValueError("the loss is NaN")

    with pytest.raises(ValueError):
        flow()
    status = read_status(run_dir)
    assert status["state"] == "failed"
    assert status["error"] == "ValueError: the loss is NaN"
    assert status["last_completed_epoch"] == 2
    assert status["pid"] == os.getpid()
    assert status["resume"] == "sennflow run --resume run.id=r1"


@pytest.mark.parametrize("kept", [True, False])
def test_a_diverged_run_is_not_offered_a_resume_that_would_diverge_again(tmp_path, kept):
    from components.training.fit import DivergedError

    run_dir = _run_folder(tmp_path)
    if kept:  # the last finite epoch's weights
        (run_dir / "checkpoints" / "last").mkdir(parents=True)

    @with_run_status
    def flow():
        start_status(run_dir, "pipeline")
        raise DivergedError(3, "train", {"train_loss": float("nan")}, 10.0)

    with pytest.raises(DivergedError):
        flow()
    status = read_status(run_dir)
    assert status["state"] == "failed" and status["resume"] is None  # `sennflow runs` lists none
    with pytest.raises(ConfigError) as refused:
        check_resumable(run_dir)
    message = str(refused.value)
    assert "training diverged at epoch 3 (stage 'train')" in message
    assert "lower train.lr (it is 10) or set train.grad_clip" in message
    assert "A resume keeps the run's config and would fail the same way" in message
    weights = f"(from its last weights: train.resume_from={run_dir}/checkpoints/last)"
    assert message.endswith(weights) == kept


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_marks_the_run_interrupted_and_prints_how_to_resume(
    signum, code, tmp_path, capsys
):
    run_dir = _run_folder(tmp_path)
    handler = signal.getsignal(signum)  # what Ray or pytest installed before, if anything

    @with_run_status
    def flow():
        start_status(run_dir, "pipeline", run_root=tmp_path / "runs")
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal did not stop the run")

    assert _run_flow(flow, contextlib.nullcontext()) == code
    status = read_status(run_dir)
    assert (status["state"], status["signal"]) == ("interrupted", signal.Signals(signum).name)
    err = capsys.readouterr().err
    assert f"resume with: sennflow run --resume run.id=r1 run.root={tmp_path / 'runs'}" in err
    assert signal.getsignal(signum) is handler  # restored


@pytest.mark.prefect
def test_an_interrupted_flow_run_is_cancelled_in_prefect_saying_how_to_resume(
    prefect_harness, tmp_path, capsys
):
    from prefect import flow, get_client

    from flows.run import link_flow_run

    run_dir = _run_folder(tmp_path)

    @flow
    @with_run_status
    def stopped():
        start_status(run_dir, "pipeline", run_root=tmp_path / "runs")
        link_flow_run(run_dir)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal did not stop the run")

    assert _run_flow(stopped, contextlib.nullcontext()) == 130
    status = read_status(run_dir)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(status["prefect_flow_run"])
    assert flow_run.name == "r1"  # named after its run folder
    assert flow_run.state.is_cancelled(), flow_run.state  # not "crashed", as Prefect left it
    assert flow_run.state.message == (
        f"interrupted by SIGINT; resume with: sennflow run --resume run.id=r1 "
        f"run.root={tmp_path / 'runs'}"
    )


@pytest.mark.prefect
@pytest.mark.parametrize("flow_run", ["6b1f4c52-0000-4000-8000-000000000000", "not-an-id"])
def test_a_flow_run_this_server_does_not_know_is_a_warning_not_an_error(
    prefect_harness, flow_run, caplog
):
    from sennflow.interrupts import cancel_flow_run

    # a run folder copied from another machine, or a status edited by hand
    cancel_flow_run({"state": "interrupted", "signal": "SIGINT", "prefect_flow_run": flow_run})
    assert f"flow run {flow_run} stays crashed" in caplog.text


@pytest.mark.prefect
def test_resuming_a_run_whose_flow_run_id_is_garbage_still_names_the_new_flow_run(
    prefect_harness, tmp_path
):
    from prefect import flow, get_client

    from flows.run import link_flow_run

    run_dir = _run_folder(tmp_path)
    start_status(run_dir, "pipeline")
    update_status(run_dir, prefect_flow_run="not-an-id")  # edited by hand

    @flow
    def resumed():
        return link_flow_run(run_dir)

    flow_run = resumed()
    assert read_status(run_dir)["prefect_flow_run"] == flow_run
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run).name == "r1"


@pytest.mark.prefect
def test_log_lines_after_the_run_folder_exists_name_the_flow_run_after_it(
    prefect_harness, tmp_path, caplog
):
    from prefect import flow, get_run_logger, task

    from flows.run import link_flow_run

    run_dir = _run_folder(tmp_path)

    @task
    def step():
        get_run_logger().info("a task's line")

    @flow(flow_run_name="random-words")
    def named():
        get_run_logger().info("before the run folder")
        link_flow_run(run_dir)
        get_run_logger().info("after the run folder")
        step()

    with caplog.at_level("INFO"):
        named()
    names = {r.getMessage(): getattr(r, "flow_run_name", None) for r in caplog.records}
    assert names["before the run folder"] == "random-words"
    assert names["flow run 'random-words' is named 'r1' after its run folder"] == "r1"
    assert names["after the run folder"] == "r1"
    assert names["a task's line"] == "r1"


@pytest.mark.parametrize(
    "root", ["/data/my runs é", "/data/it's", "/data/a$b, c", "~/runs", "runs"]
)
def test_the_resume_hint_survives_a_shell_and_hydra_unchanged(root):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from flows.run_folder import resume_command
    from sennflow.interrupts import resume_hint

    hint = resume_hint({"resume": resume_command("sweep", "r1", root)})
    command = hint.removeprefix("resume with: sennflow sweep ")
    words = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {command}"], capture_output=True, check=True, text=True
    ).stdout.split("\0")[:-1]
    parsed = OverridesParser.create().parse_overrides(words[1:])
    given = {o.key_or_group: o.value() for o in parsed}
    assert words[0] == "--resume" and given["run.id"] == "r1"
    assert given.get("run.root", "runs") == root and len(given) == 1 + (root != "runs")


def test_only_an_unfinished_run_whose_process_is_gone_can_be_resumed(tmp_path):
    run_dir = _run_folder(tmp_path)
    start_status(run_dir, "pipeline")  # this test's process: alive
    with pytest.raises(ConfigError, match="still running"):
        check_resumable(run_dir)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    update_status(run_dir, pid=int(gone.stdout))  # killed outright: left "running"
    assert check_resumable(run_dir)["state"] == "running"
    update_status(run_dir, state="completed")
    with pytest.raises(ConfigError, match="already completed"):
        check_resumable(run_dir)
    with pytest.raises(ConfigError, match="no such run folder"):
        check_resumable(tmp_path / "runs" / "pipeline" / "nope")


def _saved_run(tmp_path, overrides: list[str]) -> Path:
    """A run folder as ``sennflow run`` leaves it when killed: its config.yaml, status running."""
    from flows.config import compose, to_yaml

    run_dir = tmp_path / "runs" / "pipeline" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(compose(overrides)))
    return run_dir


def test_resume_uses_the_saved_config_and_refuses_other_settings(tmp_path):
    from flows.pipeline import resume_config

    root = f"run.root={tmp_path / 'runs'}"
    run_dir = _saved_run(tmp_path, ["model=mlp", "train.lr=0.05", "train.epochs=3"])
    cfg, found = resume_config(["run.id=r1", root, "train.epochs=7", "ray.num_cpus=1"])
    assert found == run_dir
    assert (cfg.model.name, cfg.train.lr, cfg.train.epochs) == ("mlp", 0.05, 7)
    assert (cfg.ray.num_cpus, cfg.run.id) == (1, "r1")
    same, _ = resume_config(["run.id=r1", root, "model=mlp", "train.lr=0.05", "train.epochs=3"])
    assert same.train.lr == 0.05  # the original overrides again: allowed
    with pytest.raises(ConfigError, match=r"train\.lr \(saved 0\.05, now 0\.1\) would change"):
        resume_config(["run.id=r1", root, "model=mlp", "train.lr=0.1", "train.epochs=3"])
    # the override the user changed is named first, before the keys they did not repeat
    with pytest.raises(ConfigError, match=r"other settings: train\.lr \(saved 0\.05, now 0\.1\), "):
        resume_config(["run.id=r1", root, "train.lr=0.1"])
    with pytest.raises(ConfigError, match="--resume needs run.id"):
        resume_config([root])


def test_cli_refuses_to_resume_a_completed_run(tmp_path, capsys):
    run_dir = _saved_run(tmp_path, ["model=mlp"])
    update_status(run_dir, state="completed")
    assert main(["run", "--resume", "run.id=r1", f"run.root={tmp_path / 'runs'}"]) == 2
    assert f"cannot resume {run_dir}: the run already completed" in capsys.readouterr().err


@pytest.mark.prefect
def test_bad_data_is_one_message_without_tracebacks(prefect_harness, tmp_path, capfd):
    csv = tmp_path / "nan.csv"
    csv.write_text("a,b,label\n1,2,0\n3,,1\n5,6,0\n7,8,1\n")
    code = main(
        [
            "run",
            "data=csv",
            f"data.path={csv}",
            "data.label_column=label",
            f"run.root={tmp_path / 'runs'}",
            f"run.cache_dir={tmp_path / 'cache'}",
        ]
    )
    out, err = capfd.readouterr()
    assert code == 2
    assert "Traceback" not in out + err
    assert (out + err).count("features are NaN, inf or missing") == 1
    assert "sennflow: error:" in err and str(csv) in err
    assert not (tmp_path / "runs").exists()


def _sennflow(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """``sennflow ...`` in its own process group (its output goes to ``log``)."""
    exe = shutil.which("sennflow", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "sennflow"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _epoch_after(run_dir: Path, epoch: int, proc: subprocess.Popen, log: Path) -> int:
    """Wait until the run's status.json reports an epoch after ``epoch`` (the driver writes it
    once Ray Train registered that epoch's checkpoint); return it."""
    deadline = time.monotonic() + 240
    while True:
        done = (read_status(run_dir) or {}).get("last_completed_epoch") or 0
        if done > epoch:
            return done
        assert proc.poll() is None, f"sennflow exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def _checkpoint_epochs(run_dir: Path) -> list[int]:
    """The epochs of the readable checkpoints in the run folder's Ray Train storage (one being
    written when the process died is not)."""
    from components.training.checkpoint import CheckpointError, load_state

    epochs = []
    for state in (run_dir / "ray" / "train").glob("checkpoint_*/state.pt"):
        with contextlib.suppress(CheckpointError):
            epochs.append(load_state(state.parent)["fit_state"]["epoch"])
    return sorted(epochs)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.prefect
def test_a_killed_run_resumes_from_its_newest_checkpoint(
    prefect_harness, ray_session, digits_dataset, tmp_path
):
    """SIGKILL the process group of a real ``sennflow run``, resume it, stop the resumed run
    with SIGTERM, and resume it again to completion: no registered epoch is trained twice or
    lost. The commands join this session's Ray, so no run pays for starting one."""
    import ray
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    from flows.pipeline import pipeline

    root, run_dir, log = tmp_path / "runs", tmp_path / "runs" / "pipeline" / "k", tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    place = ["run.id=k", f"run.root={root}", f"ray.address={ray.get_runtime_context().gcs_address}"]
    first = _sennflow(
        [
            "run",
            "experiment=tiny",
            "model=mlp",
            "train.epochs=300",
            "explain.methods=[gradients]",
            "explain.robustness_samples=0",
            f"run.cache_dir={digits_dataset.parent}",
            *place,
        ],
        env,
        log,
    )
    killed_after = _epoch_after(run_dir, 1, first, log)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert read_status(run_dir)["state"] == "running"  # nobody could mark it
    newest_killed = _checkpoint_epochs(run_dir)[-1]

    second = _sennflow(["run", "--resume", *place], env, log)
    stopped_after = _epoch_after(run_dir, newest_killed, second, log)
    with get_client(sync_client=True) as client:  # the killed one's flow run, left running
        killed = client.read_flow_run(
            json.loads((run_dir / "meta.json").read_text())["prefect_flow_run"]
        )
    assert killed.state.is_crashed() and "resumed by flow run" in killed.state.message
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=120) == 143, log.read_text()[-3000:]
    status = read_status(run_dir)
    assert (status["state"], status["signal"]) == ("interrupted", "SIGTERM")
    assert f"resume with: sennflow run --resume run.id=k run.root={root}" in log.read_text()

    newest = _checkpoint_epochs(run_dir)[-1]
    handler = signal.getsignal(signal.SIGINT)
    state = pipeline(
        overrides=[*place[:2], f"train.epochs={newest + 2}"], resume=True, return_state=True
    )
    assert signal.getsignal(signal.SIGINT) is handler  # Ray Train installed none of its own
    with get_client(sync_client=True) as client:  # the resuming flow run is named for its run
        assert client.read_flow_run(state.state_details.flow_run_id).name == "k"

    status = read_status(run_dir)
    assert (status["state"], status["last_completed_epoch"]) == ("completed", newest + 2)
    assert [r["after"]["state"] for r in status["resumes"]] == ["running", "interrupted"]
    train = json.loads((run_dir / "metrics.json").read_text())["train"]
    first_resume, second_resume = train["resumed_at"]
    # each resume starts from a checkpoint at least as new as the last epoch the run reported
    assert killed_after <= first_resume <= newest_killed < stopped_after <= second_resume <= newest
    assert [row["epoch"] for row in train["history"]] == list(range(1, newest + 3))
    assert (run_dir / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.ray
def test_ctrl_c_in_a_terminal_ends_the_run_interrupted_with_prefects_own_server(
    ray_session, digits_dataset, tmp_path
):
    """A terminal's Ctrl-C is SIGINT to the whole foreground process group. Without
    ``PREFECT_API_URL`` the command starts Prefect's temporary server; the signal must not stop
    that server with the flow, or the run cannot end as interrupted (exit 130, resume hint)."""
    import ray

    root, run_dir, log = tmp_path / "runs", tmp_path / "runs" / "pipeline" / "c", tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PREFECT_API_URL")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = _sennflow(
        [
            "run",
            "experiment=tiny",
            "model=mlp",
            "train.epochs=300",
            f"run.cache_dir={digits_dataset.parent}",
            "run.id=c",
            f"run.root={root}",
            f"ray.address={ray.get_runtime_context().gcs_address}",
        ],
        env,
        log,
    )
    _epoch_after(run_dir, 0, proc, log)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
    assert proc.wait(timeout=90) == 130, log.read_text()[-3000:]
    assert read_status(run_dir)["state"] == "interrupted"
    text = log.read_text()
    assert f"resume with: sennflow run --resume run.id=c run.root={root}" in text
    assert "Connection refused" not in text
