"""The ``sennflow`` command line: parses arguments, then hands over to the flows.

Heavy frameworks (torch, Ray, Prefect) are imported only once a command really runs, so
``--help`` answers instantly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import yaml

from flows.config import CONF_DIR, GROUPS

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sennflow`` console script."""
    # Prefect's temporary server would try to send usage telemetry (and log an error offline).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Ray's native crash handler in the driver also takes SIGTERM and ends the process on the
    # spot; without it, SIGTERM reaches Python and the run is marked interrupted (exit 143).
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    return args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sennflow",
        description="Train, evaluate and explain self-explaining neural networks.",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser(
        "run",
        help="run the pipeline: ingest -> train -> evaluate -> explain -> report",
        description="Run the pipeline flow. Arguments are Hydra overrides (key=value).",
        epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=mlp train.epochs=5")
    run.add_argument(
        "--show-config", action="store_true", help="print the composed config and exit"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue the interrupted, killed or failed run of run.id=<id> in its run folder "
            "from its newest checkpoint (its config.yaml; only run.*, ray.* and train.epochs "
            "may change)"
        ),
    )
    run.set_defaults(handler=_run)
    sweep = sub.add_parser(
        "sweep",
        help="search hyperparameters or architectures, retrain the best, evaluate, explain, report",
        description=(
            "Run the sweep flow: a Ray Tune sweep with the method of search=<method> (default "
            "asha), then the best configuration through the pipeline. Arguments are Hydra "
            "overrides (key=value)."
        ),
        epilog=sweep_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. search=pbt model=mlp")
    sweep.add_argument(
        "--show-config", action="store_true", help="print the composed config and exit"
    )
    sweep.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep of run.id=<id> (same overrides as before)",
    )
    sweep.set_defaults(handler=_sweep)
    explain = sub.add_parser(
        "explain",
        help="re-explain a trained run: post-hoc attributions, their scores, the best method",
        description=(
            "Run the explain flow on a finished run folder (runs/pipeline/<id> or "
            "runs/sweep/<id>) without retraining; results go to a new runs/explain/<id>/."
        ),
        epilog=(
            "overrides: explain.* (see 'sennflow run --help'), run.*, ray.*, seed\n\n"
            "examples:\n  sennflow explain runs/pipeline/<id> explain.methods=all\n"
            "  sennflow explain runs/pipeline/<id> 'explain.methods=[ig,kernel_shap]' "
            "explain.eval_samples=256 explain.num_tasks=4"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain.add_argument("run_dir", help="a finished run folder")
    explain.add_argument("overrides", nargs="*", help="e.g. explain.methods=all")
    explain.set_defaults(handler=_explain)
    stack = sub.add_parser(
        "stack",
        help="start or stop the local stack: Prefect, MLflow, Ray head, served deployments",
        description=(
            "up: start a Prefect server (UI at http://127.0.0.1:4200), an MLflow tracking server "
            "(http://127.0.0.1:5000), a Ray head and every deployment of infra/prefect.yaml "
            "served from one process, all bound to 127.0.0.1; "
            "down: stop exactly those processes; status: which are running. State and logs go "
            "to .stack/. SENNFLOW_DATABASE_URL selects Prefect's database (default SQLite)."
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
    _add_group_command(
        sub,
        "federated",
        help="federated learning on Ray client actors: prototype averaging vs FedAvg/FedProx",
        description=(
            "Run the federated flow: the training split partitioned among client actors, every "
            "strategy of federated.strategies for federated.rounds rounds, one report."
        ),
        examples=(
            "sennflow federated\n  sennflow federated federated.partition=dirichlet "
            "federated.alpha=0.1 federated.num_clients=10 federated.fraction=0.5\n"
            "  sennflow federated 'federated.strategies=[fedavg,fedprox]' federated.rounds=20"
        ),
    )
    _add_group_command(
        sub,
        "continual",
        help="continual learning on Ray learner actors: one class-incremental stream, all methods",
        description=(
            "Run the continual flow: every method of continual.methods (one Ray actor each) "
            "meets the same class-incremental stream; R, its metrics and heat maps in one report."
        ),
        examples=(
            "sennflow continual\n  sennflow continual 'continual.methods=[ncm,prd]' "
            "continual.num_tasks=5\n  sennflow continual continual.federated_clients=3"
        ),
    )
    return parser


def _add_group_command(sub, name: str, *, help: str, description: str, examples: str) -> None:
    """A command that runs the flow of config group ``name`` (federated, continual)."""
    command = sub.add_parser(
        name,
        help=help,
        description=f"{description} Arguments are Hydra overrides (key=value).",
        epilog=group_help(name) + f"\n\nexamples:\n  {examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("overrides", nargs="*", help=f"Hydra overrides, e.g. {name}.seed=1")
    command.add_argument(
        "--show-config", action="store_true", help="print the composed config and exit"
    )
    command.set_defaults(handler=_group_flow, group=name)


def group_help(group: str) -> str:
    """Every key of ``conf/<group>/default.yaml`` with its default."""
    values = yaml.safe_load((CONF_DIR / group / "default.yaml").read_text())
    lines = ["options (override with key=value; defaults shown):"]
    lines += [f"  {group}.{k}={_show(v)}" for k, v in _flat(values).items()]
    lines.append("  data=<source> (see 'sennflow run --help'), run.*, ray.*, seed")
    return "\n".join(lines)


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def sweep_help() -> str:
    """The search methods and the search keys with their defaults (read from conf/search)."""
    methods = sorted(p.stem for p in (CONF_DIR / "search").glob("*.yaml") if p.stem != "base")
    base = yaml.safe_load((CONF_DIR / "search" / "base.yaml").read_text())
    lines = [f"search methods (choose with search=<method>): {', '.join(methods)}", ""]
    lines.append("options (override with key=value; defaults shown):")
    lines += [f"  search.{k}={_show(v)}" for k, v in base.items() if not isinstance(v, dict)]
    for method in ("stn", "darts", "random_ws"):
        block = yaml.safe_load((CONF_DIR / "search" / f"{method}.yaml").read_text())
        group = "stn" if method == "stn" else "darts"
        values = ", ".join(f"{k}={_show(v)}" for k, v in block[group].items())
        lines.append(f"  search={method}: search.{group}.<key> ({values})")
    lines += [
        "  '+search.space.<group>.<name>={type:loguniform,low:1e-4,high:1e-2}'  "
        "(group: train, model, stn, darts)",
        "  every key of 'sennflow run --help' (data, model, train, run, ray)",
        "\nexamples:\n  sennflow sweep search=asha model=mlp search.num_samples=16\n"
        "  sennflow sweep search=stn\n  sennflow sweep search=darts search.darts.sd=true\n"
        "  sennflow sweep --resume run.id=<id of an interrupted sweep> search=asha",
    ]
    return "\n".join(lines)


def config_help() -> str:
    """The config groups, their options and every key with its default (read from conf/)."""
    lines = ["config groups (choose with group=option):"]
    for group in GROUPS:
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if p.stem != "base")
        lines.append(f"  {group:<11} {', '.join(options)}")
    root = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    defaults = {k: v for d in root["defaults"] if isinstance(d, dict) for k, v in d.items()}
    lines.append("\noptions (override with key=value; defaults shown):")
    model_file = CONF_DIR / "model" / f"{defaults['model']}.yaml"
    model_train = (yaml.safe_load(model_file.read_text()) or {}).get("train", {})
    for group in ("data", "model", "train", "explain"):
        values = _group_values(group, defaults.get(group))
        if group == "train":  # the default model sets its own training defaults
            values.update(model_train)
        lines += [f"  {group}.{k}={_show(v)}" for k, v in values.items()]
    for section in ("run", "ray"):
        lines += [f"  {section}.{k}={_show(v)}" for k, v in root[section].items()]
    lines.append(f"  seed={root['seed']}")
    lines.append(
        "\nexamples:\n  sennflow run\n  sennflow run model=mlp data=breast_cancer "
        "train.epochs=5 train.num_workers=2\n  sennflow run experiment=tiny"
    )
    return "\n".join(lines)


def _group_values(group: str, option: str | None) -> dict:
    values: dict = {}
    for name in ("base", option):
        path = CONF_DIR / group / f"{name}.yaml"
        if name and path.exists():
            text = path.read_text()
            loaded = yaml.safe_load(text) or {}
            if text.startswith("# @package _global_"):
                loaded = loaded.get(group, {})
            values.update({k: v for k, v in loaded.items() if k != "defaults"})
    return values


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _run(args: argparse.Namespace) -> int:
    from flows.config import ConfigError, compose, to_settings, to_yaml

    try:
        if args.resume:  # refused here, before Prefect starts, when it cannot resume
            from flows.pipeline import resume_config

            cfg, _ = resume_config(args.overrides)
        else:
            cfg = compose(args.overrides)
        settings = to_settings(cfg)
    except ConfigError as err:
        return _fail(err)
    if args.show_config:
        print(to_yaml(cfg))
        return 0
    return _run_pipeline(args.overrides, settings.train.epochs, args.resume)


def _sweep(args: argparse.Namespace) -> int:
    from flows.config import ConfigError, to_search_settings, to_settings, to_yaml
    from flows.sweep import compose_sweep

    try:
        cfg = compose_sweep(args.overrides)
        settings = to_settings(cfg)
        to_search_settings(cfg)
        if args.resume and settings.run.id is None:
            raise ConfigError("--resume needs run.id=<id of the interrupted sweep>")
    except ConfigError as err:
        return _fail(err)
    if args.show_config:
        print(to_yaml(cfg))
        return 0
    return _run_sweep(args.overrides, args.resume, cfg.search.num_samples)


def _run_sweep(overrides: list[str], resume: bool, num_trials: int) -> int:
    from flows.progress import trial_progress
    from flows.sweep import sweep

    return _run_flow(
        lambda: sweep(overrides=overrides, resume=resume),
        trial_progress(num_trials),
        lambda result: f"best configuration ({result.method}): {result.best_config}",
        overrides=overrides,
    )


def _explain(args: argparse.Namespace) -> int:
    from flows.config import ConfigError, to_settings
    from flows.explain import explain_run, load_run_config

    try:
        to_settings(load_run_config(Path(args.run_dir), args.overrides))
    except ConfigError as err:
        return _fail(err)
    return _run_flow(
        lambda: explain_run(run_dir=args.run_dir, overrides=args.overrides),
        contextlib.nullcontext(),
        lambda result: f"re-explained {result.source}",
    )


def _group_flow(args: argparse.Namespace) -> int:
    """``sennflow federated`` / ``sennflow continual``: validate, then run with progress bars."""
    from flows.config import ConfigError, to_group_config, to_settings, to_yaml

    if args.group == "federated":
        from components.federated.experiment import FederatedConfig as config_class
        from flows.federated import compose_federated as compose_group
        from flows.federated import federated as flow
    else:
        from components.continual.config import ContinualConfig as config_class
        from flows.continual import compose_continual as compose_group
        from flows.continual import continual as flow
    try:
        cfg = compose_group(args.overrides)
        to_settings(cfg)
        config = to_group_config(cfg, args.group, config_class)
    except ConfigError as err:
        return _fail(err)
    if args.show_config:
        print(to_yaml(cfg))
        return 0
    from flows.progress import step_progress

    if args.group == "federated":
        title, totals = "rounds", dict.fromkeys(config.strategies, config.rounds)
    else:
        title, totals = "tasks", dict.fromkeys(config.methods, config.num_tasks)
        if config.federated_clients:
            totals["federated"] = config.num_tasks
    return _run_flow(lambda: flow(overrides=args.overrides), step_progress(title, totals))


def _stack(args: argparse.Namespace) -> int:
    from flows.stack import StackConfig, StackError, down, pid_file, status, up

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
        for name, alive in status(config).items():
            print(f"{name}: {'running' if alive else 'stopped'}")
        return 0
    try:
        pids = up(config)
    except StackError as err:
        return _fail(err)
    print(f"started {', '.join(f'{n} (pid {p})' for n, p in pids.items())}")
    print(f"Prefect UI:     http://{config.host}:{config.prefect_port}")
    print(f"Ray dashboard:  http://{config.host}:{config.dashboard_port}")
    if config.mlflow:
        print(f"MLflow UI:      {config.tracking_uri}  (runs with tracking=mlflow log here)")
    print(
        f"use it:         export PREFECT_API_URL={config.api_url} RAY_ADDRESS={config.ray_address}"
    )
    return 0


def _input_errors() -> tuple[type[Exception], ...]:
    from components.data.errors import DataError
    from components.training.checkpoint import CheckpointError, ModelSpecError
    from flows.config import ConfigError

    return ConfigError, DataError, CheckpointError, ModelSpecError, FileExistsError


def _run_failures() -> tuple[type[Exception], ...]:
    """Runs that started and failed for a reason the message explains (a diverging fit, a sweep
    none of whose trials finished): one message and exit 1, not 2, because the run folder, its
    ``failed`` status and its finite checkpoints exist; the input itself was valid."""
    from components.search.tune_sweep import SweepFailedError
    from components.training.fit import DivergedError

    return DivergedError, SweepFailedError


def _run_pipeline(overrides: list[str], epochs: int, resume: bool = False) -> int:
    from flows.pipeline import pipeline
    from flows.progress import epoch_progress

    return _run_flow(lambda: pipeline(overrides=overrides, resume=resume), epoch_progress(epochs))


def _run_flow(call, progress, intro=None, overrides: list[str] = ()) -> int:
    """Run ``call()`` (a flow) inside ``progress``; input errors exit 2 with one message, run
    failures (:func:`_run_failures`) exit 1 with one message, SIGINT/SIGTERM exit 130/143
    (:func:`_interrupted`), else print the result (after ``intro(result)`` when given).
    ``overrides``: the command's, for a sweep's resume hint."""
    from flows.run_folder import signal_of, started_runs

    before, ray_was_up = len(started_runs()), _ray_is_up()
    try:
        with _quiet_input_errors(), _interrupt_signals(), progress:
            result = call()
    except _input_errors() as err:
        return _fail(err)
    except _run_failures() as err:
        return _fail(err, EXIT_RUN_FAILED)
    except _interrupts() as err:
        if signal_of(err) is None:  # a plain sys.exit
            raise
        return _interrupted(err, started_runs()[before:], overrides, stop_ray=not ray_was_up)
    if intro is not None:
        print(intro(result))
    _print_result(result)
    return 0


@contextlib.contextmanager
def _interrupt_signals():
    """While a flow runs, SIGTERM (like SIGINT) raises ``RunInterrupted`` in the main thread, so
    the run ends as interrupted instead of the process dying on the spot.

    Ray Tune's own SIGINT handler, which would end the search quietly and let the sweep go on to
    retrain, is switched off (Ray Train's is avoided in ``train_with_ray``).
    """
    from flows.run_folder import RunInterrupted

    def handler(signum, frame):
        raise RunInterrupted(signum)

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _interrupts() -> tuple[type[BaseException], ...]:
    """What SIGINT/SIGTERM become: ``ray.init`` replaces the SIGTERM handler of its driver's main
    thread with ``sys.exit(SIGTERM)``, Prefect's flow engine with ``TerminationSignal``."""
    from prefect.exceptions import TerminationSignal

    return KeyboardInterrupt, TerminationSignal, SystemExit


def _interrupted(
    err: BaseException, run_dirs: list[Path], overrides: list[str], *, stop_ray: bool
) -> int:
    """Mark the run interrupted, shut down the Ray the command started (``stop_ray``) and
    with it the workers, say how to resume; return 128 + the signal's number."""
    from flows.run_folder import mark_interrupted, signal_of

    signum = signal_of(err)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:  # a second signal during the clean-up ends the process at once
        signal.signal(sig, lambda number, frame: os._exit(128 + number))
    try:
        statuses = [mark_interrupted(run_dir, signum) for run_dir in run_dirs]
        if stop_ray:
            _shutdown_ray()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    name = signal.Signals(signum).name
    if not statuses:
        print(f"sennflow: {name}: stopped before the run folder was created", file=sys.stderr)
    for run_dir, status in zip(run_dirs, statuses, strict=True):
        print(f"sennflow: {name}: run {run_dir} marked interrupted", file=sys.stderr)
        print(f"sennflow: {_resume_hint(status, overrides)}", file=sys.stderr)
    return 128 + signum


def _resume_hint(status: dict, overrides: list[str]) -> str:
    command = status.get("resume")
    if command is None:
        return f"a {status.get('flow', 'run')} run cannot be resumed; start it again"
    same = [o for o in overrides if not o.startswith(("run.id=", "run.root="))]
    command = command.replace("<the same overrides>", " ".join(same)).rstrip()
    return f"resume with: {command}"


def _ray_is_up() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized()


def _shutdown_ray() -> None:
    """Stop the local Ray this process started (its workers with it), or leave the cluster it
    joined (Ray then ends this driver's actors: the training workers)."""
    if _ray_is_up():
        import ray

        ray.shutdown()


@contextlib.contextmanager
def _quiet_input_errors():
    """Keep Prefect's console from printing an input error several times (the task's and the
    flow's tracebacks and their "Finished in state Failed"): the CLI prints it once. The
    records still reach the Prefect API, so the UI shows the failure in full."""
    from prefect.logging.handlers import PrefectConsoleHandler

    quiet = _InputErrorFilter((*_input_errors(), *_run_failures()))
    handlers = [
        handler
        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for handler in getattr(logger, "handlers", [])
        if isinstance(handler, PrefectConsoleHandler)
    ]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


class _InputErrorFilter(logging.Filter):
    """Drops records that carry an input error, or report a run that failed of one."""

    def __init__(self, kinds: tuple[type[Exception], ...]) -> None:
        super().__init__()
        self.kinds = kinds
        self.names = tuple(f"{name}: " for name in _class_names(kinds))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.kinds):
            return False
        if not record.name.startswith("prefect."):
            return True
        message = record.getMessage()
        failed = message.startswith(("Finished in state Failed", "Crash detected"))
        return not (failed and any(name in message for name in self.names))


def _class_names(kinds) -> set[str]:
    """The names of ``kinds`` and of all their subclasses."""
    names: set[str] = set()
    pending = list(kinds)
    while pending:
        kind = pending.pop()
        names.add(kind.__name__)
        pending.extend(kind.__subclasses__())
    return names


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="headline metrics", show_header=False)
    for key, value in result.headline.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console = Console()
    console.print(table)
    console.print(f"run folder: {result.run_dir}")
    if result.report:
        console.print(f"report:     {Path(result.report).resolve()}")


def _fail(err: Exception, code: int = EXIT_BAD_INPUT) -> int:
    print(f"sennflow: error: {err}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
