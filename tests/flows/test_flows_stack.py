"""The local stack (``sennflow stack up`` / ``down``) against its real parts on loopback.

One test drives the whole life of a stack on free ports: a real Prefect server, a Ray head and
the served deployments of ``infra/prefect.yaml``; the tiny pipeline is triggered through the
Prefect API, runs on the stack's Ray head, and leaves its artifacts and run folder; a run with
an invalid parameter is refused by the server; ``down`` stops exactly the started processes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import psutil
import pytest

from flows.stack import StackConfig, StackError, down, read_pids, status, up

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
def stack(tmp_path, loopback):
    config = stack_config(tmp_path, loopback, ray_cpus=2)
    up(config)
    try:
        yield config
    finally:
        down(config)


def run_deployment_via_api(config: StackConfig, name: str, parameters: dict):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def run():
        async with get_client() as client:
            await wait_for_deployment(client, name)
            flow_run = await run_deployment(name, parameters=parameters, timeout=600)
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


def test_stack_serves_the_deployments_and_runs_the_pipeline_from_the_api(stack, tmp_path, loopback):
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
    ray_sockets = listening(pids["ray"])
    assert ("127.0.0.1", stack.dashboard_port) in ray_sockets
    assert not any(port == stack.dashboard_port and ip != "127.0.0.1" for ip, port in ray_sockets)

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


def test_invalid_parameters_are_refused_at_run_creation(stack):
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


def test_down_stops_exactly_what_up_started(tmp_path, loopback):
    config = stack_config(tmp_path, loopback, serve=False, ray_cpus=1)
    bystander = psutil.Popen(["sleep", "60"])  # a process the stack did not start
    try:
        pids = up(config)
        address_file = Path("/tmp/ray/ray_current_cluster")
        assert address_file.read_text().endswith(f":{config.ray_port}")
        assert down(config) == ["ray", "mlflow", "prefect"]
        assert not address_file.exists()  # as `ray stop` leaves it: no stale "auto" address
        for pid in pids.values():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert not Path(config.state_dir / "pids.json").exists()
        assert bystander.is_running()
    finally:
        bystander.kill()
        down(config)


def test_up_refuses_a_port_in_use_before_starting_anything(tmp_path, loopback):
    config = stack_config(tmp_path, loopback)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", config.mlflow_port))
        taken.listen()
        with pytest.raises(StackError, match=f"port {config.mlflow_port} on 127.0.0.1"):
            up(config)
    assert read_pids(config) == {}  # nothing was started
