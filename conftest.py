"""Session-wide fixtures: one Ray instance and one Prefect test harness per test session, and
real servers on loopback (S3, MLflow) for the tests that need them."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

# Keep tests from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Importing `prefect.main` sets up Prefect's logging, whose console handler keeps the sys.stderr
# of that moment. Here that is the session's stream; first imported inside a test (`main([...])`
# imports the flows lazily) it would be that test's capsys stream, closed when the test ends,
# and every later Prefect log line in the process would fail on it.
import prefect.main  # noqa: E402,F401


def pytest_unconfigure(config):
    """Prefect stops a temporary API server at exit and logs it through that console handler,
    whose stream pytest has closed by then: the line is dropped instead of a logging traceback."""
    logging.raiseExceptions = False


def pytest_collection_modifyitems(items):
    """Files with slow tests first, each file's tests together and in their order. ``make test``
    hands whole files to its two workers in this order (``--no-loadscope-reorder``), so the long
    files start early and the many short ones even out the end; xdist's own order (most tests
    first) started a 160-second file 13 minutes in and left one worker idle for 94 s at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture
def ray_start_lock():
    """Held by a test while it runs a ``ray start`` cluster. Ray records a machine's newest
    cluster in one file (``/tmp/ray/ray_current_cluster``), so two such tests in parallel
    pytest workers (``make test``) must not overlap: the second waits for the first."""
    with (Path(tempfile.gettempdir()) / "sennflow-tests-ray-start.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs, shared by every test that needs Ray."""
    import ray

    from components.training.ray_runtime import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness: a temporary API server and database for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def flow_run_count(prefect_harness):
    """A function: how many flow runs the session's Prefect server holds (a refused command
    must leave none behind)."""
    from prefect import get_client

    def count() -> int:
        with get_client(sync_client=True) as client:
            return client.count_flow_runs()

    return count


@pytest.fixture(scope="session")
def digits_dataset(tmp_path_factory):
    """The digits dataset ingested once into a session cache folder."""
    from components.data.ingest import ingest
    from components.data.spec import DataSpec

    return ingest(DataSpec(source="digits"), tmp_path_factory.mktemp("cache")).path


@pytest.fixture(scope="session")
def parts_image_dataset(tmp_path_factory):
    """2,000 generated 32x32 ``parts`` images (PNG and JPEG, one folder per class) ingested
    once at 32x32, 256 files per Parquet part."""
    from components.data.ingest import ingest
    from components.data.parts_folder import write_parts_folder
    from components.data.spec import DataSpec

    root = tmp_path_factory.mktemp("parts-images")
    folder = write_parts_folder(root / "images", num_samples=2000, size=32, formats=("png", "jpeg"))
    spec = DataSpec(source="image_folder", path=str(folder), image_size=32, partition_rows=256)
    return ingest(spec, root / "cache").path


@pytest.fixture(scope="session")
def train_model():
    """Train a model in place with the project's fit loop: its stages and pushes included,
    no validation-driven stopping; extra keyword arguments are :class:`TrainConfig` fields."""
    from components.training.batches import ShardBatches
    from components.training.checkpoint import ModelSpec
    from components.training.config import TrainConfig
    from components.training.fit import fit

    def train(model, x, y, *, epochs, lr, batch_size=64, seed=0, **overrides):
        spec = ModelSpec("external", tuple(x.shape[1:]), int(y.max()) + 1)
        cfg = TrainConfig(
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            early_stopping_patience=0,
            **overrides,
        )
        batches = ShardBatches(x, y, batch_size=batch_size, shuffle=True, seed=seed)
        fit(
            model,
            batches,
            ShardBatches(x, y, batch_size=512, shuffle=False),
            cfg=cfg,
            spec=spec,
            report=lambda *_: None,
        )
        return model.eval()

    return train


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API server (moto) on a free loopback port with an empty bucket ``sennflow``;
    yields the environment that points pyarrow (and so Ray) at it."""
    import pyarrow.fs as pafs

    port = free_port()
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.2)
        pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            allow_bucket_creation=True,
        ).create_dir("sennflow")
        yield env
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _in_group(pgid: int, read):
    """``read(process)`` for every process in group ``pgid`` (those that vanish are skipped)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                found.append(read(process))
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def listening(pgid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening socket of the processes in group ``pgid``."""
    sockets = _in_group(pgid, lambda p: p.net_connections(kind="inet"))
    return {
        (c.laddr.ip, c.laddr.port)
        for each in sockets
        for c in each
        if c.status == psutil.CONN_LISTEN
    }


def commands(pgid: int) -> list[str]:
    """The command line of every process in group ``pgid``."""
    return _in_group(pgid, lambda p: " ".join(p.cmdline()))


@pytest.fixture(scope="session")
def loopback():
    """Helpers for tests of servers: ``free_port()``, ``listening(pgid)`` and
    ``commands(pgid)``."""
    return SimpleNamespace(free_port=free_port, listening=listening, commands=commands)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (the project's :func:`server_command`) on a free loopback port,
    in its own process group: ``(url, process)``."""
    from components.tracking.server import server_command, server_env

    state, port = tmp_path_factory.mktemp("mlflow-server"), free_port()
    log = (state / "server.log").open("w")
    proc = subprocess.Popen(
        server_command(state, port=port),
        env=server_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (state / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.3)
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
