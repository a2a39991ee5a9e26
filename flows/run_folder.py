"""Run folders: ``runs/<flow>/<run-id>/`` with the resolved config and provenance beside outputs.

Every run folder also holds ``status.json``, what became of the run: ``running`` (with the pid
and host of the process, and the last completed training epoch), then ``completed``, ``failed``
(with the error) or ``interrupted`` (with the signal). A run whose process was killed outright
stays ``running`` with a pid that no longer lives; :func:`check_resumable` tells the two apart.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from components import atomic
from flows.config import ConfigError
from flows.config_errors import shell_override

PACKAGES = (
    "sennflow",
    "torch",
    "ray",
    "prefect",
    "dask",
    "pyarrow",
    "hydra-core",
    "numpy",
    "captum",
)


def new_run_id() -> str:
    """``<UTC timestamp>-<random suffix>``: sortable and unique across concurrent runs."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_run_dir_free(root: str | Path, flow: str, run_id: str | None) -> None:
    """Before any work: the run folder :func:`create_run_dir` will make can be made (the same
    errors, raised before the data is read and Ray starts)."""
    from flows.config import ConfigError, check_run_id

    run_dir = Path(root) / flow / (check_run_id(run_id) or "")
    if run_id is not None and run_dir.is_dir():
        raise FileExistsError(_exists_message(run_dir))
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"run.root={root}: cannot create {run_dir}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"run.root={root}: cannot create {run_dir}: {existing} is read-only")


def _exists_message(run_dir: Path) -> str:
    return f"run folder {run_dir} already exists; choose another run.id or leave it unset"


def create_run_dir(root: str | Path, flow: str, run_id: str | None) -> Path:
    """Create a fresh run folder; never reuse one, so nothing written earlier is overwritten.

    Raises:
        ConfigError: ``run_id`` is no safe folder name (it would leave ``root/flow``), or
            ``root`` cannot be written (read-only, full, not a folder).
        FileExistsError: the folder exists already.
    """
    from flows.config import ConfigError, check_run_id

    run_dir = Path(root) / flow / (check_run_id(run_id) or new_run_id())
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()
    except OSError as err:  # read-only, full, or a file in the way: exit 2, naming the path
        if isinstance(err, FileExistsError) and run_dir.is_dir():
            raise FileExistsError(_exists_message(run_dir)) from err
        raise ConfigError(f"run.root={root}: cannot create {run_dir}: {err.strerror}") from err
    return run_dir


def git_sha() -> str:
    """The sennflow checkout's commit (with ``-dirty`` for local changes), or ``unknown`` when
    sennflow does not run from a git checkout of its own (a wheel install: ``packages`` then
    holds its version). A wheel installed into a virtualenv inside some other repository
    would otherwise record that repository's commit."""
    source = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != source:
            return "unknown"
        sha, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_summary(use_gpu: bool) -> str:
    """Where training ran, as far as the driver can tell."""
    import torch

    if use_gpu and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def write_run_files(run_dir: Path, *, config_yaml: str, seed: int, use_gpu: bool) -> dict:
    """Write ``config.yaml`` and ``meta.json``; return the meta dict."""
    atomic.write_text(run_dir / "config.yaml", config_yaml)
    meta = {
        "run_id": run_dir.name,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "seeds": {"global": seed},
        "device": device_summary(use_gpu),
    }
    write_json(run_dir / "meta.json", meta)
    return meta


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a file."""
    atomic.write_text(path, json.dumps(payload, indent=2, default=str))


STATUS = "status.json"
RUNNING, COMPLETED, FAILED, INTERRUPTED = "running", "completed", "failed", "interrupted"
KILLED = "killed"  # shown for a run left running by a process gone from this host
DEFAULT_ROOT = "runs"
RESUME_COMMANDS = {
    "pipeline": "sennflow run --resume",
    "sweep": "sennflow sweep --resume",
    "prune": "sennflow prune --resume",
}

_LOCK = threading.Lock()  # epoch updates come from Ray's progress thread, the end from the flow's
_STARTED: list[Path] = []  # run folders whose status this process started, oldest first
_SCOPE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("run_status", default=None)


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the process: the run stops, is marked interrupted, and can be
    resumed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def read_status(run_dir: Path | str) -> dict | None:
    """The run's ``status.json``, or ``None`` for a folder without one (``ConfigError`` when it
    is no JSON object)."""
    return read_run_json(Path(run_dir) / STATUS)


def read_run_json(path: Path) -> dict | None:
    """A run folder's JSON file (``status.json``, ``meta.json``, ``metrics.json``) as a dict, or
    ``None`` when there is no such file.

    Raises:
        ConfigError: the file is not a JSON object (cut short, edited by hand); the message
            names it, and the file is left as it is.
    """
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it as JSON ({err}); repair or restore it") from err
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: holds a JSON {type(value).__name__}, not an object")
    return value


def read_run_config(run_dir: Path):
    """The run folder's ``config.yaml`` as a ``DictConfig``, its ``${...}`` unresolved.

    Raises:
        ConfigError: no such file, or not a YAML mapping; the message names the file.
    """
    import yaml
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(run_dir) / "config.yaml"
    try:
        saved = OmegaConf.load(path)
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"cannot read {path}: {' '.join(str(err).split())}") from err
    if not isinstance(saved, DictConfig):
        raise ConfigError(f"{path} is not a config mapping")
    return saved


def update_status(run_dir: Path | str, **fields) -> dict:
    """Merge ``fields`` into ``status.json`` (written atomically) and return the new status."""
    with _LOCK:
        status = {**(read_status(run_dir) or {}), **fields, "updated": _now()}
        write_json(Path(run_dir) / STATUS, status)
    return status


def start_status(run_dir: Path, flow: str, *, run_root: str | Path = DEFAULT_ROOT) -> dict:
    """Mark ``run_dir`` running in this process (a resumed run keeps its history in
    ``resumes``); inside a flow decorated with :func:`with_run_status`, the run then ends
    completed, failed or interrupted on its own."""
    previous = read_status(run_dir) or {}
    resumes = previous.get("resumes", [])
    if previous:
        last = {"state": previous.get("state"), "epoch": previous.get("last_completed_epoch")}
        resumes = [*resumes, {"at": _now(), "after": last}]
    status = update_status(
        run_dir,
        flow=flow,
        run_id=run_dir.name,
        state=RUNNING,
        started=previous.get("started", _now()),
        last_completed_epoch=previous.get("last_completed_epoch"),
        error=None,
        signal=None,
        resume=resume_command(flow, run_dir.name, run_root),
        resumes=resumes,
        **_this_process(),
    )
    scope = _SCOPE.get()
    if scope is not None:
        scope["run_dir"] = run_dir
    _STARTED.append(run_dir)
    return status


def started_runs() -> list[Path]:
    """The run folders whose status this process started, oldest first."""
    return list(_STARTED)


def with_run_status(fn: Callable) -> Callable:
    """Decorate a flow function: the run folder it passes to :func:`start_status` records each
    finished training epoch, and ends ``completed``, ``failed`` (with the error) or
    ``interrupted`` (KeyboardInterrupt, SIGTERM: with the signal)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tasks.progress import epoch_listener

        scope: dict = {"run_dir": None}
        token = _SCOPE.set(scope)
        try:
            with epoch_listener(lambda metrics: _record_epoch(scope, metrics)):
                result = fn(*args, **kwargs)
        except BaseException as err:
            if scope["run_dir"] is not None:
                _end(scope["run_dir"], err)
            raise
        finally:
            _SCOPE.reset(token)
        if scope["run_dir"] is not None:
            update_status(scope["run_dir"], state=COMPLETED)
        return result

    # Prefect resolves string annotations in the wrapper's module; resolve them in the flow's.
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)
    return wrapper


def mark_interrupted(run_dir: Path, signum: int) -> dict:
    """Record that ``signum`` stopped the run, unless it had already completed."""
    status = read_status(run_dir) or {}
    if status.get("state") == COMPLETED:
        return status
    return update_status(run_dir, state=INTERRUPTED, signal=signal.Signals(signum).name)


def check_resumable(run_dir: Path) -> dict:
    """The status of a run that may be resumed: it exists, did not complete, and is not running.

    A run left ``running`` by a process that is gone (killed outright, a lost machine) may be
    resumed; one whose process still lives on this host, or that ran on another host, may not.

    Raises:
        ConfigError: saying why the run cannot be resumed.
    """
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"cannot resume {run_dir}: no such run folder (no config.yaml)")
    status = read_status(run_dir) or {}
    state = status.get("state")
    if state == COMPLETED or (not status and (run_dir / "report.html").is_file()):
        raise ConfigError(f"cannot resume {run_dir}: the run already completed. {_after(run_dir)}")
    if state == FAILED and status.get("resume", "") is None:
        raise ConfigError(
            f"cannot resume {run_dir}: {status.get('error')}. A resume keeps the run's config "
            f"and would fail the same way; start a new run with the change instead"
            + _from_weights(run_dir)
        )
    if state == RUNNING and status.get("host") != socket.gethostname():
        raise ConfigError(
            f"cannot resume {run_dir}: status.json says it is running on host "
            f"{status.get('host')} (pid {status.get('pid')}); resume it there once it stopped"
        )
    if state == RUNNING and _alive(status):
        raise ConfigError(
            f"cannot resume {run_dir}: it is still running (pid {status['pid']}); stop it first"
        )
    return status


def shown_state(status: dict) -> str:
    """The state of ``status``, with a run left ``running`` by a process that no longer lives on
    this host shown as :data:`KILLED` (a run on another host cannot be told apart: running)."""
    state = status.get("state") or "unknown"
    if state == RUNNING and status.get("host") == socket.gethostname() and not _alive(status):
        return KILLED
    return state


def _from_weights(run_dir: Path) -> str:
    """How a new run continues from ``run_dir``'s last checkpoint, where it has one."""
    last = run_dir / "checkpoints" / "last"
    if not last.is_dir():
        return ""
    return f" (from its last weights: {shell_override('train.resume_from', str(last))})"


def _after(run_dir: Path) -> str:
    """What to do instead of resuming a completed run (its flow is the run folder's parent)."""
    if run_dir.parent.name == "sweep":
        return "Start a new sweep (another run.id) to search again."
    return (
        "To train it further, start a new run from its checkpoint: sennflow run "
        f"{shell_override('train.resume_from', f'{run_dir}/checkpoints/last')} "
        "train.epochs=<more epochs>"
    )


def resume_command(flow: str, run_id: str, run_root: str | Path = DEFAULT_ROOT) -> str | None:
    """The command that resumes a run of ``flow``, ready for a shell (``None``: the flow cannot
    resume)."""
    if flow not in RESUME_COMMANDS:
        return None
    parts = [RESUME_COMMANDS[flow], f"run.id={run_id}"]
    if str(run_root) != DEFAULT_ROOT:
        parts.append(shell_override("run.root", str(run_root)))
    return " ".join(parts)


def _record_epoch(scope: dict, metrics: dict) -> None:
    run_dir = scope["run_dir"]
    if run_dir is None:
        return
    with _LOCK:
        status = read_status(run_dir) or {}
        if status.get("state") == RUNNING:  # a late epoch never revives a finished run
            status.update(last_completed_epoch=int(metrics["epoch"]), updated=_now())
            write_json(run_dir / STATUS, status)


def _end(run_dir: Path, err: BaseException) -> None:
    signum = signal_of(err)
    if signum is not None:
        update_status(run_dir, state=INTERRUPTED, signal=signal.Signals(signum).name)
    elif getattr(err, "resumable", True):
        update_status(run_dir, state=FAILED, error=f"{type(err).__name__}: {err}")
    else:  # resuming the same config would fail the same way (a diverged fit)
        update_status(run_dir, state=FAILED, error=f"{type(err).__name__}: {err}", resume=None)


def signal_of(err: BaseException) -> int | None:
    """The signal an exception stands for: Ctrl-C, Prefect's ``TerminationSignal``, or the
    ``sys.exit(SIGTERM)`` by which ``ray.init``'s own handler answers SIGTERM on a driver."""
    from prefect.exceptions import TerminationSignal

    if isinstance(err, RunInterrupted):
        return err.signum
    if isinstance(err, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(err, TerminationSignal):
        return err.signal
    if isinstance(err, SystemExit) and err.code == signal.SIGTERM:
        return signal.SIGTERM
    return None


def _this_process() -> dict:
    import psutil

    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "pid_started": psutil.Process(pid).create_time(),
    }


def _alive(status: dict) -> bool:
    """Whether the process that wrote ``status`` still runs (same pid and start time)."""
    import psutil

    try:
        started = psutil.Process(int(status["pid"])).create_time()
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False
    return abs(started - float(status.get("pid_started", 0))) < 1.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
