"""``sennflow stack``: start, stop or inspect the local stack (:mod:`ops.stack`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def stack_command(sub) -> None:
    """Add ``sennflow stack up|down|status`` to the subcommands ``sub``."""
    stack = sub.add_parser(
        "stack",
        help="start or stop the local stack: Prefect, MLflow, Ray head, served deployments",
        description=(
            "up: start a Prefect server (UI at http://127.0.0.1:4200), an MLflow tracking server "
            "(http://127.0.0.1:5000), a Ray head and every deployment of infra/prefect.yaml "
            "served from one process, all bound to 127.0.0.1; "
            "down: stop exactly those processes; status: which are running (exit 0 when all "
            "are, 1 when some stopped, 3 when no stack was started). State and logs go to "
            ".stack/. SENNFLOW_DATABASE_URL selects Prefect's database (default SQLite)."
        ),
    )
    stack.add_argument("action", choices=("up", "down", "status"))
    stack.add_argument("--state-dir", default=None, help="pid file and logs (default .stack)")
    stack.add_argument("--prefect-port", type=int, default=4200)
    stack.add_argument("--ray-port", type=int, default=6379)
    stack.add_argument("--dashboard-port", type=int, default=8265)
    stack.add_argument("--mlflow-port", type=int, default=5000)
    stack.add_argument("--host", default="127.0.0.1", help="address the servers bind")
    stack.add_argument("--no-serve", action="store_true", help="do not serve the deployments")
    stack.add_argument("--no-mlflow", action="store_true", help="no MLflow tracking server")
    stack.set_defaults(handler=_stack)


def _stack(args: argparse.Namespace) -> int:
    from ops.stack import StackConfig, StackError, down, pid_file, up
    from sennflow.cli import fail

    kwargs = {"state_dir": Path(args.state_dir)} if args.state_dir else {}
    config = StackConfig(
        host=args.host,
        prefect_port=args.prefect_port,
        ray_port=args.ray_port,
        dashboard_port=args.dashboard_port,
        mlflow_port=args.mlflow_port,
        serve=not args.no_serve,
        mlflow=not args.no_mlflow,
        **kwargs,
    )
    if args.action == "down":
        stopped = down(config)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        if pid_file(config).exists():  # kept: a recorded pid is now another process
            print(f"sennflow: error: not everything was stopped; see {pid_file(config)}")
            return 1
        return 0
    if args.action == "status":
        return _status(config)
    try:
        pids = up(config)
    except StackError as err:
        return fail(err)
    print(f"started {', '.join(f'{n} (pid {p})' for n, p in pids.items())}")
    print(f"Prefect UI:     http://{config.host}:{config.prefect_port}")
    print(f"Ray dashboard:  http://{config.host}:{config.dashboard_port}")
    if config.mlflow:
        print(f"MLflow UI:      {config.tracking_uri}  (runs with tracking=mlflow log here)")
    print(
        f"use it:         export PREFECT_API_URL={config.api_url} RAY_ADDRESS={config.ray_address}"
    )
    return 0


def _status(config) -> int:
    """Print each recorded process's state; exit as an init script's ``status`` does (LSB): 0 all
    running, 1 some stopped though recorded, 3 nothing recorded."""
    from ops.stack import pid_file, status

    alive = status(config)
    if not alive:
        print(f"no stack is running: none was started from {config.state_dir} (sennflow stack up)")
        return 3
    for name, running in alive.items():
        print(f"{name}: {'running' if running else 'stopped'}")
    if all(alive.values()):
        return 0
    print(f"see the logs in {config.state_dir}; `sennflow stack down` clears {pid_file(config)}")
    return 1
