"""What the CLI does around a running flow: SIGINT/SIGTERM end the run as interrupted (and say
how to resume it), and Prefect's console prints an error the CLI reports only once."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path


@contextlib.contextmanager
def interrupt_signals():
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


def start_prefect_server() -> None:
    """Start Prefect's temporary API server now, in a session of its own, when no
    ``PREFECT_API_URL`` names a server.

    Left to Prefect, it starts on first use in this process's group, so a Ctrl-C in a terminal
    (SIGINT to the whole foreground group) stops it with the flow: the interrupted run can then
    record nothing in Prefect, and the command spends minutes on refused connections and ends
    with a traceback and exit 1 instead of 130. In its own session the terminal's signals miss
    it; Prefect still stops it when the command exits. ``SubprocessASGIServer`` is the
    process-wide instance Prefect's clients use, so they find it running.
    """
    import functools
    import subprocess

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    server = SubprocessASGIServer()
    if server.running:
        return
    popen = subprocess.Popen
    subprocess.Popen = functools.partial(popen, start_new_session=True)  # its one Popen call
    try:
        server.start()
    finally:
        subprocess.Popen = popen


def interrupts() -> tuple[type[BaseException], ...]:
    """What SIGINT/SIGTERM become: ``ray.init`` replaces the SIGTERM handler of its driver's main
    thread with ``sys.exit(SIGTERM)``, Prefect's flow engine with ``TerminationSignal``."""
    from prefect.exceptions import TerminationSignal

    return KeyboardInterrupt, TerminationSignal, SystemExit


def interrupted(err: BaseException, run_dirs: list[Path], *, stop_ray: bool) -> int:
    """Mark the run interrupted, shut down the Ray the command started (``stop_ray``) and
    with it the workers, say how to resume; return 128 + the signal's number."""
    from flows.run_folder import mark_interrupted, signal_of

    signum = signal_of(err)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:  # a second signal during the clean-up ends the process at once
        signal.signal(sig, lambda number, frame: os._exit(128 + number))
    try:
        statuses = [mark_interrupted(run_dir, signum) for run_dir in run_dirs]
        for status in statuses:
            cancel_flow_run(status)
        if stop_ray:
            shutdown_ray()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    name = signal.Signals(signum).name
    if not statuses:
        print(f"sennflow: {name}: stopped before the run folder was created", file=sys.stderr)
    for run_dir, status in zip(run_dirs, statuses, strict=True):
        print(f"sennflow: {name}: run {run_dir} marked interrupted", file=sys.stderr)
        print(f"sennflow: {resume_hint(status)}", file=sys.stderr)
    return 128 + signum


def cancel_flow_run(status: dict) -> None:
    """Mark the Prefect flow run of the interrupted run whose ``status.json`` is ``status``
    cancelled, saying by which signal and how to resume it: Prefect's engine records an
    interrupted flow run as crashed, which the UI (and an automation watching for crashes) would
    take for a failure. A server that cannot be reached, or does not know the flow run, leaves it
    crashed, with a warning."""
    import httpx
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Cancelled

    flow_run = status.get("prefect_flow_run")
    if status.get("state") != "interrupted" or not flow_run:
        return
    message = f"interrupted by {status.get('signal')}; {resume_hint(status)}"
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run, Cancelled(message=message), force=True)
    except (httpx.HTTPError, ObjectNotFound, ValueError) as err:  # another server's, or no id
        logging.getLogger(__name__).warning("flow run %s stays crashed: %s", flow_run, err)


def resume_hint(status: dict) -> str:
    """How to resume the run whose ``status.json`` is ``status``."""
    command = status.get("resume")
    if command is None:
        return f"a {status.get('flow', 'run')} run cannot be resumed; start it again"
    return f"resume with: {command}"


def ray_is_up() -> bool:
    """Whether this process has started or joined Ray (without importing Ray to find out)."""
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized()


def shutdown_ray() -> None:
    """Stop the local Ray this process started (its workers with it), or leave the cluster it
    joined (Ray then ends this driver's actors: the training workers)."""
    if ray_is_up():
        import ray

        ray.shutdown()


@contextlib.contextmanager
def quiet_console(kinds: tuple[type[Exception], ...]):
    """Keep Prefect's console from printing an error of ``kinds`` several times (the task's and
    the flow's tracebacks and their "Finished in state Failed"): the CLI prints it once. The
    records still reach the Prefect API, so the UI shows the failure in full."""
    from prefect.logging.handlers import PrefectConsoleHandler

    quiet = ErrorFilter(kinds)
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


class ErrorFilter(logging.Filter):
    """Drops records that carry an error of ``kinds``, or report a run that failed of one."""

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
