"""The MLflow tracking server with and without MLflow's job execution (`server_env`): time to
answer /health, processes started and CPU seconds used while idle, side by side.

    .venv/bin/python bench/mlflow_server.py [--idle-s 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.tracking.server import server_command, server_env  # noqa: E402


def group(pgid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                found.append(process)
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def measure(env: dict[str, str], idle_s: float) -> tuple[float, int, float]:
    """(seconds to /health, processes in the server's group, CPU seconds over ``idle_s``)."""
    with tempfile.TemporaryDirectory() as state:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        start = time.monotonic()
        proc = subprocess.Popen(
            server_command(state, port=port),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            ready = time.monotonic() - start
            time.sleep(5)  # let whatever the server starts come up
            processes = group(proc.pid)
            before = cpu_s(processes)
            time.sleep(idle_s)
            return ready, len(processes), cpu_s(processes) - before
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=60.0)
    args = parser.parse_args()
    mlflow_default = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_SERVER_")}
    rows = {"MLflow's default": measure(mlflow_default, args.idle_s)}
    rows["server_env()"] = measure(server_env(), args.idle_s)
    print(f"{'':18} {'to /health':>10} {'processes':>9} {'idle CPU s':>10}")
    for name, (ready, count, cpu) in rows.items():
        print(f"{name:18} {ready:9.1f}s {count:9d} {cpu:10.1f}")
    base, ours = rows["MLflow's default"], rows["server_env()"]
    print(f"idle CPU ratio (server_env / default): {ours[2] / max(base[2], 1e-9):.3f}")


if __name__ == "__main__":
    main()
