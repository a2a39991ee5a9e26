"""The runs under a run root (``runs/<flow>/<run-id>/``), oldest first: what ``sennflow runs``
lists. Only reads: a run folder whose ``status.json`` cannot be read is listed as unreadable,
with why, and the others are listed as usual."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flows.config import ConfigError
from flows.run_folder import COMPLETED, FAILED, INTERRUPTED, KILLED, read_status, shown_state

RESUMABLE = (INTERRUPTED, FAILED, KILLED)
UNREADABLE = "unreadable"
# The flows whose run is about one model (the others, e.g. federated and continual, train their
# own networks; their config's model section is the default, not what ran).
MODEL_FLOWS = ("pipeline", "sweep", "explain", "predict", "prune")


@dataclass(frozen=True)
class RunRow:
    """One run folder as listed.

    Attributes:
        flow: the flow folder it is in (``pipeline``, ``sweep``, ...).
        run_id: the run folder's name.
        state: :func:`~flows.run_folder.shown_state` of its status (``killed`` for a process
            gone from this host), ``unreadable``, or, for a folder without ``status.json``,
            ``completed`` when it has a report and ``unknown`` otherwise.
        started: when the run first started (ISO 8601, UTC), if recorded.
        epoch: the last completed training epoch, if any.
        what: what it ran, from its ``config.yaml``: a sweep's method, the model (with its
            trunk) and the data (``protopnet/resnet18 on image_folder birds``); a predict run's
            inputs instead of the data; None where the config says nothing readable.
        headline: the headline metrics a finished run recorded.
        resume: the command that resumes it, for a run that stopped before completing.
        problem: why its status could not be read.
    """

    flow: str
    run_id: str
    state: str
    started: str | None = None
    epoch: int | None = None
    what: str | None = None
    headline: dict = field(default_factory=dict)
    resume: str | None = None
    problem: str | None = None


def list_runs(root: Path | str) -> list[RunRow]:
    """Every run folder (a folder with ``config.yaml``) under ``root``, oldest first. ``root``
    is a run root (``runs/``), or one flow's folder of it (``runs/pipeline``), or one run folder.

    Raises:
        ConfigError: ``root`` is no folder.
    """
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "no such folder"
        raise ConfigError(f"{root}: {what} of runs (the run.root runs were written to)")
    if _is_run(root):
        return [_row(root)]
    flow_dirs = [root] if any(map(_is_run, _listed(root))) else _listed(root)
    rows = [
        _row(run_dir)
        for flow_dir in flow_dirs
        if flow_dir.is_dir()
        for run_dir in _listed(flow_dir)
        if _is_run(run_dir)
    ]
    return sorted(rows, key=lambda row: (row.started or "", row.flow, row.run_id))


def _is_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file()


def _listed(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as err:
        raise ConfigError(f"{folder}: cannot list it ({err.strerror or err})") from err


def _row(run_dir: Path) -> RunRow:
    named = {"flow": run_dir.parent.name, "run_id": run_dir.name, "what": _what(run_dir)}
    try:
        status = read_status(run_dir)
    except ConfigError as err:
        return RunRow(**named, state=UNREADABLE, problem=str(err))
    if status is None:  # written before runs kept a status
        state = COMPLETED if (run_dir / "report.html").is_file() else "unknown"
        return RunRow(**named, state=state)
    state = shown_state(status)
    resume = status.get("resume") if state in RESUMABLE else None
    return RunRow(  # a hand-edited status may hold anything: only values of the right type
        **named,
        state=str(state),
        started=_typed(status.get("started"), str),
        epoch=_typed(status.get("last_completed_epoch"), int),
        headline=_typed(status.get("headline"), dict) or {},
        resume=_typed(resume, str),
    )


def _typed(value, kind: type):
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _what(run_dir: Path) -> str | None:
    """:attr:`RunRow.what` of ``run_dir`` (its flow is the parent folder's name)."""
    config = _yaml(run_dir / "config.yaml")
    data = _mapping(config, "data")
    if not isinstance(data.get("source"), str):
        return None
    path = data.get("path")
    used = f"{data['source']} {_name(path)}" if isinstance(path, str) and path else data["source"]
    flow = run_dir.parent.name
    if flow not in MODEL_FLOWS:
        return f"on {used}"
    model = _mapping(config, "model")
    backbone = _mapping(model, "params").get("backbone")
    what = f"{model.get('name')}/{backbone}" if backbone else str(model.get("name"))
    if flow == "sweep":
        what = f"{_mapping(config, 'search').get('method')}: {what}"
    if flow == "predict":
        given = _yaml(run_dir / "meta.json").get("input")  # the files it predicted
        used = _name(given) if isinstance(given, str) else "?"
    return f"{what} on {used}"


def _yaml(path: Path) -> dict:
    """A YAML (or JSON) file's mapping; {} where it is missing, unreadable or no mapping."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _mapping(config: dict, key: str) -> dict:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _name(path: str) -> str:
    """The last part of a path or URL (``/data/birds/`` -> ``birds``)."""
    return path.rstrip("/").rsplit("/", 1)[-1] or path
