"""The local stack: a Prefect server, a Ray head and the served deployments, as one unit.

``sennflow stack up`` (``make stack``) starts, each in its own process group and bound to
127.0.0.1 unless told otherwise:

1. ``prefect server start`` (SQLite in the state folder by default; set
   ``SENNFLOW_DATABASE_URL=postgresql+asyncpg://user:pass@host/db`` for Postgres);
2. ``mlflow server`` (SQLite and artifacts in the state folder), the tracking server of the
   served runs (``MLFLOW_TRACKING_URI``: ``tracking=mlflow`` logs there);
3. ``ray start --head --block`` (token authentication stays on, the dashboard on 127.0.0.1);
4. ``python -m ops.serve``: every deployment of ``infra/prefect.yaml`` registered with that
   server, its runs executed against that Ray head.

Their pids and start times go to ``<state>/pids.json`` (written atomically) and their logs to
``<state>/<name>.log``; ``sennflow stack down`` (``make stack-down``) stops exactly those process
groups (SIGINT, then SIGTERM and SIGKILL after grace periods) and nothing else: a pid that is now
another process (a stale file after a reboot) is named and left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil

from flows.run_folder import write_json
from ops.serve import PREFECT_FILE, ROOT

logger = logging.getLogger(__name__)

# A process's start time is read from the kernel as boot time + ticks since boot, and the boot
# time moves when the clock is stepped; a pid reused by another process starts much later.
_START_TIME_TOLERANCE_S = 1.0


class StackError(RuntimeError):
    """The stack cannot start or stop as asked; the message says why."""


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which addresses it binds.

    Attributes:
        state_dir: pid file, logs and the SQLite database.
        host: the address every server binds (keep 127.0.0.1 unless others must reach it).
        prefect_port: the Prefect API and UI.
        ray_port: the Ray head's GCS port.
        dashboard_port: the Ray dashboard.
        mlflow_port: the MLflow tracking server (UI and API).
        database_url: Prefect's database; None: SQLite in ``state_dir``.
        serve: also serve the deployments.
        mlflow: also start the MLflow tracking server.
        ray_cpus: CPUs the Ray head offers (None: all).
    """

    state_dir: Path = field(default_factory=lambda: ROOT / ".stack")
    host: str = "127.0.0.1"
    prefect_port: int = 4200
    ray_port: int = 6379
    dashboard_port: int = 8265
    mlflow_port: int = 5000
    database_url: str | None = None
    serve: bool = True
    mlflow: bool = True
    ray_cpus: int | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"

    @property
    def ray_address(self) -> str:
        return f"{self.host}:{self.ray_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    def ports(self) -> list[int]:
        """Every port the stack will listen on."""
        return [
            self.prefect_port,
            *([self.mlflow_port] if self.mlflow else []),
            self.ray_port,
            self.dashboard_port,
        ]


def up(config: StackConfig, timeout_s: float = 120.0) -> dict[str, int]:
    """Start the stack and return ``{name: pid}``; on any failure stop what was started."""
    if config.serve and not PREFECT_FILE.is_file():
        raise StackError(
            f"cannot serve the deployments: no {PREFECT_FILE} (start the stack from the source "
            "tree or a folder holding infra/prefect.yaml, or pass --no-serve)"
        )
    config.state_dir.mkdir(parents=True, exist_ok=True)
    running = _running(config)
    if running:
        raise StackError(
            f"the stack in {config.state_dir} is already running ({running}); "
            "run 'sennflow stack down' first"
        )
    for port in config.ports():
        if _port_open(config.host, port):
            raise StackError(f"port {port} on {config.host} is already in use")
    records: dict[str, tuple[int, float | None]] = {}

    def start(name: str, command: list[str], environment: dict) -> None:
        records[name] = _start(config, name, command, environment)
        _write_records(config, records)

    try:
        start("prefect", _prefect_command(config), _prefect_env(config))
        _wait_http(f"{config.api_url}/health", timeout_s, config, "prefect")
        if config.mlflow:
            start("mlflow", *_mlflow_process(config))
            _wait_http(f"{config.tracking_uri}/health", timeout_s, config, "mlflow")
        start("ray", _ray_command(config), _ray_env())
        _wait_port(config.host, config.ray_port, timeout_s, config, "ray")
        _wait_port(config.host, config.dashboard_port, timeout_s, config, "ray")
        _wait_ray_started(config, timeout_s)
        if config.serve:
            start("serve", [sys.executable, "-m", "ops.serve"], env(config))
    except BaseException:
        down(config)
        raise
    return {name: pid for name, (pid, _) in records.items()}


def down(config: StackConfig, grace_s: float = 20.0) -> list[str]:
    """Stop the process groups in the pid file (newest first); return the names stopped.

    A recorded pid that is now another process is not signalled: a warning names it, and the
    pid file stays for the user to check and delete.
    """
    records = _read_records(config)
    stopped, refused = [], []
    for name, (pid, started) in reversed(list(records.items())):
        reason = _not_ours(pid, started)
        if reason:
            refused.append(name)
            logger.warning(
                "%s: pid %d (%s) %s; not signalled. Delete %s once you have checked.",
                pid_file(config), pid, name, reason, pid_file(config),
            )  # fmt: skip
        elif _stop_group(pid, grace_s):
            stopped.append(name)
    if "ray" in records and "ray" not in refused:
        _forget_ray_address(config)
    if not refused:
        pid_file(config).unlink(missing_ok=True)
    return stopped


def _ray_address_file() -> Path:
    """Ray's "current cluster" file: ``ray start`` writes the head's address there once the
    node is up, and ``address="auto"`` is resolved through it."""
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def _names_our_head(config: StackConfig) -> bool:
    try:
        return _ray_address_file().read_text().strip().endswith(f":{config.ray_port}")
    except OSError:
        return False


def _wait_ray_started(config: StackConfig, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _names_our_head(config):
        _check_started(config, "ray")
        if time.monotonic() > deadline:
            raise StackError(f"ray start did not finish within {timeout_s} s; see its log")
        time.sleep(0.2)


def _forget_ray_address(config: StackConfig) -> None:
    """Remove the "current cluster" file if it names our head, as ``ray stop`` would: left
    behind, it sends ``address="auto"`` to a cluster that no longer exists (and it hangs)."""
    if _names_our_head(config):
        with contextlib.suppress(OSError):
            _ray_address_file().unlink()


def status(config: StackConfig) -> dict[str, bool]:
    """``{name: alive}`` of every process in the pid file (a pid now used by another process
    counts as not alive)."""
    return {name: _is_ours_alive(*record) for name, record in _read_records(config).items()}


def env(config: StackConfig) -> dict[str, str]:
    """The environment flows need to use this stack: its API URL, Ray address (``ray.init``
    joins ``RAY_ADDRESS``, so every served run trains on the stack's Ray head) and tracking
    server."""
    tracking = {"MLFLOW_TRACKING_URI": config.tracking_uri} if config.mlflow else {}
    return {
        **_ray_env(),
        **tracking,
        "PREFECT_API_URL": config.api_url,
        "RAY_ADDRESS": config.ray_address,
        "SENNFLOW_RAY_ADDRESS": config.ray_address,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def pid_file(config: StackConfig) -> Path:
    return config.state_dir / "pids.json"


def read_pids(config: StackConfig) -> dict[str, int]:
    """``{name: pid}`` as recorded in the pid file (empty when there is none)."""
    return {name: pid for name, (pid, _) in _read_records(config).items()}


def _read_records(config: StackConfig) -> dict[str, tuple[int, float | None]]:
    """``{name: (pid, start time)}``; files written before start times were recorded hold bare
    pids, whose start time is None."""
    path = pid_file(config)
    if not path.exists():
        return {}
    return {
        name: (entry["pid"], entry["started"]) if isinstance(entry, dict) else (entry, None)
        for name, entry in json.loads(path.read_text()).items()
    }


def _write_records(config: StackConfig, records: dict[str, tuple[int, float | None]]) -> None:
    """Record each pid with its start time, so ``down`` can tell it from a later process that
    reuses the pid."""
    entries = {name: {"pid": pid, "started": started} for name, (pid, started) in records.items()}
    write_json(pid_file(config), entries)


def _prefect_command(config: StackConfig) -> list[str]:
    prefect = Path(sys.executable).with_name("prefect")
    return [
        str(prefect),
        "server",
        "start",
        "--host",
        config.host,
        "--port",
        str(config.prefect_port),
    ]


def _prefect_env(config: StackConfig) -> dict[str, str]:
    database = config.database_url or os.environ.get("SENNFLOW_DATABASE_URL")
    database = database or f"sqlite+aiosqlite:///{(config.state_dir / 'prefect.db').resolve()}"
    return {
        **os.environ,
        "PREFECT_API_DATABASE_CONNECTION_URL": database,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": config.api_url,
    }


def _mlflow_process(config: StackConfig) -> tuple[list[str], dict[str, str]]:
    """The MLflow server's command and environment."""
    from components.tracking.server import server_command, server_env

    state = config.state_dir / "mlflow"
    state.mkdir(parents=True, exist_ok=True)
    return server_command(state, host=config.host, port=config.mlflow_port), server_env()


def _ray_env() -> dict[str, str]:
    """Token authentication on, for the head and for every driver that joins it: the token
    is ``RAY_AUTH_TOKEN`` if set, else the one Ray keeps in ``~/.ray/auth_token``."""
    return {**os.environ, "RAY_AUTH_MODE": "token"}


def _ray_command(config: StackConfig) -> list[str]:
    ray = Path(sys.executable).with_name("ray")
    command = [
        str(ray), "start", "--head", "--block",
        "--port", str(config.ray_port),
        "--node-ip-address", config.host,
        "--dashboard-host", config.host,
        "--dashboard-port", str(config.dashboard_port),
    ]  # fmt: skip
    if config.ray_cpus is not None:
        command += ["--num-cpus", str(config.ray_cpus)]
    return command


def _start(
    config: StackConfig, name: str, command: list[str], environment: dict
) -> tuple[int, float | None]:
    """Start ``command`` in its own process group; return its pid and start time."""
    output = (config.state_dir / f"{name}.log").open("ab")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped as one, and only it
    )
    try:  # not yet reaped, so readable even if it has already exited
        return process.pid, psutil.Process(process.pid).create_time()
    except psutil.NoSuchProcess:
        return process.pid, None


def _wait_http(url: str, timeout_s: float, config: StackConfig, name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _check_started(config, name)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise StackError(f"{name} did not answer at {url} within {timeout_s} s; see its log")


def _wait_port(host: str, port: int, timeout_s: float, config: StackConfig, name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _check_started(config, name)
        if _port_open(host, port):
            return
        time.sleep(0.5)
    raise StackError(f"{name} did not listen on {host}:{port} within {timeout_s} s")


def _check_started(config: StackConfig, name: str) -> None:
    pid = read_pids(config).get(name)
    if pid is not None and not _is_alive(pid):
        log = config.state_dir / f"{name}.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise StackError(f"{name} exited while starting; the end of {log}:\n{tail}")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _is_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(config: StackConfig) -> dict[str, int]:
    """The recorded processes that are alive and still the ones recorded."""
    records = _read_records(config)
    return {name: pid for name, (pid, started) in records.items() if _is_ours_alive(pid, started)}


def _is_ours_alive(pid: int, started: float | None) -> bool:
    return _is_alive(pid) and started is not None and _not_ours(pid, started) is None


def _not_ours(pid: int, started: float | None) -> str | None:
    """Why the process group ``pid`` may not be the one recorded as started at ``started``;
    None when it is, or when nothing of it is left to signal."""
    _is_alive(pid)  # reap the leader if it is our exited child
    try:
        now = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return _not_our_group(pid, started)
    if started is None:
        return "was recorded without its start time, so it cannot be told from another process"
    if abs(now - started) > _START_TIME_TOLERANCE_S:
        return f"is now another process (started {_when(now)}, recorded {_when(started)})"
    return None


def _not_our_group(pgid: int, started: float | None) -> str | None:
    """The leader is gone; its group may still hold its children, which started after it, on
    this boot. Anything else holding that group id is someone else's."""
    members = _group_members(pgid)
    if not members:
        return None
    if started is None or started < psutil.boot_time() - _START_TIME_TOLERANCE_S:
        return "is gone and its process group now holds other processes"
    if any(member.create_time() < started - _START_TIME_TOLERANCE_S for member in members):
        return "is gone and its process group holds processes older than it"
    return None


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid:
                process.create_time()  # fails now, not later, for one that just exited
                members.append(process)
    return members


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def _stop_group(pid: int, grace_s: float) -> bool:
    """Stop the process group led by ``pid``: SIGINT (each server shuts down cleanly; the
    served deployments pause), SIGTERM after ``grace_s``, SIGKILL 5 s later."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return sig is not signal.SIGINT  # gone: stopped now, or was never running
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return True
            time.sleep(0.2)
    return True


def _group_alive(pgid: int) -> bool:
    _is_alive(pgid)  # reap the leader if it is our child
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
