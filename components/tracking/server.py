"""The ``mlflow server`` command of a local tracking server, bound to loopback by default."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# MLflow 3 starts job consumers with its server (8 processes, each importing MLflow) for GenAI
# jobs that tracking never submits; idle, they cost CPU all the time the server runs.
SERVER_SETTINGS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def server_env() -> dict[str, str]:
    """The environment to start :func:`server_command` in: this process's, with MLflow's job
    execution off (``SERVER_SETTINGS``)."""
    return {**os.environ, **SERVER_SETTINGS}


def server_command(
    state_dir: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    backend_store_uri: str | None = None,
    workers: int = 1,
) -> list[str]:
    """The argv of an MLflow tracking server that keeps its state in ``state_dir``.

    Runs are stored in ``state_dir/mlflow.db`` (SQLite) unless ``backend_store_uri`` says
    otherwise; artifacts are uploaded through the server (``--serve-artifacts``) to
    ``state_dir/artifacts``, so clients need no access to the server's disk. MLflow's security
    middleware is left on: its defaults accept loopback clients (Host ``127.0.0.1``/
    ``localhost``, any port); set ``--allowed-hosts`` before binding to other addresses.

    Args:
        state_dir: folder of the database and the artifacts (made by the caller).
        host: the address the server binds; keep 127.0.0.1 unless others must reach it.
        port: the port of the UI and the REST API.
        backend_store_uri: e.g. ``postgresql://user:pass@host/db``; None: SQLite in state_dir.
        workers: uvicorn worker processes.
    """
    state = Path(state_dir).resolve()
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        backend_store_uri or f"sqlite:///{state / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(state / "artifacts"),
    ]
