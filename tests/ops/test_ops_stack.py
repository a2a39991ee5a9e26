"""The local stack (``sennflow stack up`` / ``down``) against its real parts on loopback.

One test drives the whole life of a stack on free ports: a real Prefect server, a Ray head and
the served deployments of ``infra/prefect.yaml``; the tiny pipeline is triggered through the
Prefect API, runs on the stack's Ray head, and leaves its artifacts and run folder; a run with
an invalid parameter is refused by the server; ``down`` stops exactly the started processes,
and leaves alone a recorded pid that is now another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import socket
import time
from pathlib import Path

import psutil
import pytest

from ops.stack import StackConfig, StackError, down, pid_file, read_pids, status, up
from sennflow.cli import main

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


def stack_config(tmp_path, loopback, **settings) -> StackConfig:
    """A stack in ``tmp_path`` on free loopback ports."""
    ports = ("prefect_port", "ray_port", "dashboard_port", "mlflow_port")
    return StackConfig(
        state_dir=tmp_path / "stack",
        **{name: loopback.free_port() for name in ports},
        **settings,
    )


@pytest.fixture
def stack(ray_start_lock, tmp_path, loopback, monkeypatch):
    # the served deployments look for new runs every second, not every 10 s (Prefect's default)
    monkeypatch.setenv("PREFECT_RUNNER_POLL_FREQUENCY", "1")
    config = stack_config(tmp_path, loopback, ray_cpus=2)
    up(config)
    try:
        yield config
    finally:
        down(config)


def ask_gcs(address: str, metadata: tuple) -> str:
    """Ask a Ray GCS for its cluster id as any gRPC client would: ``"OK"`` or the status name."""
    import grpc
    from ray.core.generated import gcs_service_pb2 as pb
    from ray.core.generated import gcs_service_pb2_grpc as rpc

    with grpc.insecure_channel(address) as channel:
        try:
            rpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                pb.GetClusterIdRequest(), metadata=metadata, timeout=10
            )
            return "OK"
        except grpc.RpcError as err:
            return err.code().name


def ray_token_metadata() -> tuple:
    """The token the stack's head was started with, as a gRPC header."""
    from ray._raylet import AuthenticationTokenLoader

    header = AuthenticationTokenLoader.instance().get_token_for_http_header(ignore_auth_mode=True)
    return tuple(header.items())


def run_deployment_via_api(config: StackConfig, name: str, parameters: dict):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def run():
        async with get_client() as client:
            await wait_for_deployment(client, name)
            flow_run = await run_deployment(
                name, parameters=parameters, timeout=600, poll_interval=1
            )
            artifacts = await client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
            )
            return flow_run, artifacts

    with temporary_settings({PREFECT_API_URL: config.api_url}):
        return asyncio.run(run())


async def wait_for_deployment(client, name: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await client.read_deployment_by_name(name)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


def test_stack_serves_runs_the_pipeline_from_the_api_refuses_bad_input_and_stops(
    stack, tmp_path, loopback
):
    listening = loopback.listening
    pids = read_pids(stack)
    assert set(pids) == {"prefect", "mlflow", "ray", "serve"} and all(status(stack).values())
    # the servers the stack starts bind to loopback
    prefect_sockets = listening(pids["prefect"])
    assert ("127.0.0.1", stack.prefect_port) in prefect_sockets
    assert all(ip == "127.0.0.1" for ip, _ in prefect_sockets)
    mlflow_sockets = listening(pids["mlflow"])
    assert ("127.0.0.1", stack.mlflow_port) in mlflow_sockets
    assert all(ip == "127.0.0.1" for ip, _ in mlflow_sockets)
    assert not [c for c in loopback.commands(pids["mlflow"]) if "huey" in c]  # job execution off
    ray_sockets = listening(pids["ray"])
    assert ("127.0.0.1", stack.dashboard_port) in ray_sockets
    assert not any(port == stack.dashboard_port and ip != "127.0.0.1" for ip, port in ray_sockets)
    # the head's GCS listens on every interface (Ray offers no other choice): the token guards it
    assert ask_gcs(stack.ray_address, ()) == "UNAUTHENTICATED"
    assert ask_gcs(stack.ray_address, ray_token_metadata()) == "OK"
    assert main(["stack", "status", "--state-dir", str(stack.state_dir)]) == 0
    # each pid is recorded with its start time, for `down` to tell it from a later process
    recorded = json.loads(pid_file(stack).read_text())
    assert {n: r["started"] for n, r in recorded.items()} == {
        n: psutil.Process(pid).create_time() for n, pid in pids.items()
    }

    runs = tmp_path / "runs"
    overrides = [
        "experiment=tiny",
        "tracking=mlflow",  # logs to the stack's MLflow server ($MLFLOW_TRACKING_URI)
        f"run.root={runs}",
        f"run.cache_dir={tmp_path / 'cache'}",
    ]
    flow_run, artifacts = run_deployment_via_api(
        stack, "pipeline/digits-proto-ae", {"overrides": overrides}
    )
    assert flow_run.state.is_completed(), flow_run.state
    (run_dir,) = (runs / "pipeline").iterdir()
    assert (run_dir / "report.html").is_file() and (run_dir / "metrics.json").is_file()
    keys = {a.key for a in artifacts}
    assert any(k.startswith("report-") for k in keys) and any(
        k.startswith("metrics-") for k in keys
    )
    report = next(a for a in artifacts if a.key.startswith("report-"))
    assert "test_accuracy" in report.data and str(run_dir) in report.data

    from mlflow import MlflowClient

    tracked = MlflowClient(stack.tracking_uri).search_runs(
        [
            MlflowClient(stack.tracking_uri)
            .get_experiment_by_name("sennflow-pipeline")
            .experiment_id
        ],
        filter_string=f"tags.`sennflow.run_id` = '{run_dir.name}'",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert len(tracked) == 1 and tracked[0].data.metrics["test_accuracy"] == metrics["accuracy"]
    assert not (runs / "mlflow.db").exists()  # not the local default store

    # one stack for all checks: starting one costs half a minute
    refuses_invalid_parameters_at_run_creation(stack)
    stops_exactly_what_up_started(stack)


def refuses_invalid_parameters_at_run_creation(stack):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def create(parameters):
        async with get_client() as client:
            deployment = await wait_for_deployment(client, "sweep/nightly-sweep")
            assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
            assert deployment.schedules[0].schedule.timezone == "UTC"
            return await client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters
            )

    with (
        temporary_settings({PREFECT_API_URL: stack.api_url}),
        pytest.raises(PrefectHTTPStatusError, match="409|422|Validation"),
    ):
        asyncio.run(create({"options": {"method": "grid"}}))


def stops_exactly_what_up_started(config: StackConfig) -> None:
    pids = read_pids(config)
    bystander = psutil.Popen(["sleep", "60"])  # a process the stack did not start
    try:
        address_file = Path("/tmp/ray/ray_current_cluster")
        assert address_file.read_text().endswith(f":{config.ray_port}")
        assert down(config) == ["serve", "ray", "mlflow", "prefect"]
        assert not address_file.exists()  # as `ray stop` leaves it: no stale "auto" address
        for pid in pids.values():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert not pid_file(config).exists()
        assert bystander.is_running()
    finally:
        bystander.kill()


def test_up_refuses_a_port_in_use_before_starting_anything(tmp_path, loopback):
    config = stack_config(tmp_path, loopback)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", config.mlflow_port))
        taken.listen()
        with pytest.raises(StackError, match=f"port {config.mlflow_port} on 127.0.0.1"):
            up(config)
    assert read_pids(config) == {}  # nothing was started


def sleeper() -> psutil.Popen:
    """A harmless process leading its own process group, as a stack's server would."""
    return psutil.Popen(["sleep", "60"], start_new_session=True)


def test_down_leaves_alone_a_pid_that_is_now_another_process(tmp_path, caplog, capsys):
    config = StackConfig(state_dir=tmp_path / "stack")
    config.state_dir.mkdir()
    reused, unverifiable, ours = sleeper(), sleeper(), sleeper()
    try:
        # a stale file: one pid now belongs to a process started an hour after the recorded one,
        # one was written without start times (an older sennflow); one is still the stack's
        records = {
            "prefect": {"pid": reused.pid, "started": reused.create_time() - 3600},
            "mlflow": unverifiable.pid,
            "serve": {"pid": ours.pid, "started": ours.create_time()},
        }
        pid_file(config).write_text(json.dumps(records))
        with caplog.at_level(logging.WARNING, logger="ops.stack"):
            code = main(["stack", "down", "--state-dir", str(config.state_dir)])
        assert code == 1  # not everything could be stopped
        assert "stopped: serve\n" in capsys.readouterr().out
        assert reused.is_running() and unverifiable.is_running()
        assert not ours.is_running()  # it was the stack's: stopped
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2
        assert f"pid {reused.pid} (prefect) is now another process" in warnings[1]
        assert f"pid {unverifiable.pid} (mlflow) was recorded without its start time" in warnings[0]
        # the strangers still run, yet are not reported as the stack running
        assert status(config) == {"prefect": False, "mlflow": False, "serve": False}
        assert pid_file(config).exists()  # kept for the user to check
    finally:
        for process in (reused, unverifiable, ours):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
                process.wait(timeout=5)


def test_a_failed_rewrite_of_the_pid_file_keeps_the_previous_one(tmp_path, monkeypatch):
    from ops.stack import _write_records

    config = StackConfig(state_dir=tmp_path / "stack")
    config.state_dir.mkdir()
    _write_records(config, {"prefect": (101, 1.5)})

    def disk_full(path, data, *args, **kwargs):  # the disk fills half-way through any write
        with open(path, "wb") as file:
            file.write((data.encode() if isinstance(data, str) else data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _write_records(config, {"prefect": (101, 1.5), "ray": (202, 2.5)})
    assert read_pids(config) == {"prefect": 101}


def test_status_exits_0_1_or_3_as_an_init_script_does(tmp_path, capsys):
    config = StackConfig(state_dir=tmp_path / "stack")
    status_of = ["stack", "status", "--state-dir", str(config.state_dir)]
    assert main(status_of) == 3
    assert capsys.readouterr().out == (
        f"no stack is running: none was started from {config.state_dir} (sennflow stack up)\n"
    )
    config.state_dir.mkdir()
    alive, gone = sleeper(), sleeper()
    records = {
        name: {"pid": process.pid, "started": process.create_time()}
        for name, process in (("prefect", alive), ("mlflow", alive), ("ray", gone))
    }
    gone.kill()
    gone.wait(timeout=5)
    try:
        pid_file(config).write_text(json.dumps(records))
        assert main(status_of) == 1  # recorded, yet one is gone
        out = capsys.readouterr().out
        assert out.splitlines()[:3] == ["prefect: running", "mlflow: running", "ray: stopped"]
        del records["ray"]
        pid_file(config).write_text(json.dumps(records))
        assert main(status_of) == 0
        assert capsys.readouterr().out == "prefect: running\nmlflow: running\n"
    finally:
        alive.kill()
        alive.wait(timeout=5)
