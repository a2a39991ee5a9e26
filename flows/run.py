"""The run skeleton every flow shares: its typed option form, opening a run and finishing it.

A flow composes its config once (``flows.config``), ingests, checks what it can before anything
is written, then

* :func:`open_run` creates the run folder (or reopens the one it resumes), starts its
  ``status.json``, writes ``config.yaml`` and ``meta.json`` and logs where the folder is;
* the flow's own stages run (train, search, federated rounds, ...);
* :func:`finish_run` writes ``metrics.json`` and the flow's other result files, the report and
  its Prefect artifacts, logs the run to MLflow when tracking is on, and returns the
  :class:`RunResult` the CLI prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from prefect import get_run_logger
from pydantic import BaseModel

from components import atomic
from flows.config import ConfigError, changed_keys, to_settings, to_yaml
from flows.config_errors import hydra_string, override_key
from flows.run_folder import (
    STATUS,
    check_resumable,
    create_run_dir,
    read_run_config,
    read_run_json,
    start_status,
    update_status,
    write_json,
    write_run_files,
)
from tasks.report import report_task
from tasks.tracking import track_task

if TYPE_CHECKING:
    from components.data.ingest import IngestResult
    from components.report import ReportData
    from flows.config import FlowSettings


class FlowOptions(BaseModel):
    """A flow's common knobs as a typed form (the Prefect UI renders it); every set field
    becomes the Hydra override of its key in ``KEYS`` (field -> config key)."""

    KEYS: ClassVar[dict[str, str]] = {}

    def to_overrides(self) -> list[str]:
        """The Hydra overrides these options stand for; unset fields are left out."""
        values = self.model_dump()
        return [
            f"{key}={_hydra_value(values[name])}"
            for name, key in self.KEYS.items()
            if values[name] is not None
        ]


def all_overrides(options: FlowOptions | None, overrides: list[str] | None) -> list[str]:
    """The options' overrides, then the explicit ones (which win)."""
    return [*(options.to_overrides() if options else []), *(overrides or [])]


# Text Hydra reads back as that same text without quotes (not a number, bool or null).
_PLAIN_TEXT = re.compile(r"[A-Za-z_/.][\w./:@%+-]*", re.ASCII)


def _hydra_value(value) -> str:
    """``value`` as override text: a path or URL with spaces, commas, brackets, quotes or
    non-ASCII letters, and text that would read as a number or ``null``, is quoted."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        plain = _PLAIN_TEXT.fullmatch(value) and value.lower() not in ("true", "false", "null")
        return value if plain else hydra_string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_hydra_value(item) for item in value) + "]"
    return str(value)


class RunResult(BaseModel):
    """What a finished flow returns (the CLI prints it)."""

    run_dir: str
    report: str
    headline: dict[str, float | int | str]


@dataclass(frozen=True)
class OpenRun:
    """A run whose folder exists: the flow's name, the folder, its provenance and config."""

    flow: str
    run_dir: Path
    meta: dict
    config_yaml: str


@dataclass(frozen=True)
class TrackedModel:
    """What MLflow logs of a run besides its headline: per-epoch rows, the best checkpoint
    folder (None: no model), a sweep's trials."""

    history: list[dict]
    model_dir: Path | None
    trials: list[dict] = field(default_factory=list)


def check_training_fits(settings: FlowSettings, *, train: bool = True, ssl=None, pfn=None) -> None:
    """Start or join Ray, and refuse (``ConfigError``), before the run folder exists, a Ray
    Train group that a Ray this process started cannot hold: Ray Train would wait for it
    forever (:func:`components.training.ray_runtime.check_group_fits`). The groups: the
    ``train`` one (unless ``train=False``), and those of an ``ssl`` or ``pfn`` config given
    (one CPU per worker, no GPU)."""
    from components.training.ray_runtime import check_group_fits, ensure_ray

    ensure_ray(settings.run.ray_address, settings.run.ray_num_cpus)
    groups = {}
    if train:
        t = settings.train
        groups["train"] = (t.num_workers, t.cpus_per_worker, t.use_gpu)
    for key, config in (("ssl", ssl), ("pfn", pfn)):
        if config is not None:
            groups[key] = (config.num_workers, 1, False)
    for key, group in groups.items():
        try:
            check_group_fits(*group, key=key)
        except ValueError as err:
            raise ConfigError(str(err)) from err


def open_run(
    flow: str,
    settings: FlowSettings,
    cfg,
    *,
    resume_dir: Path | None = None,
    meta_extra: dict | None = None,
) -> OpenRun:
    """Create the run folder of ``flow`` (or reopen ``resume_dir``), start its status, write
    ``config.yaml`` and ``meta.json``.

    A resumed run keeps its own ``meta.json`` (its provenance); its ``config.yaml`` is written
    again, since a resume may change e.g. ``train.epochs`` (the caller checked that it may be
    resumed: ``check_resumable``). ``meta_extra`` is added to a new
    run's meta (e.g. the run an explain flow re-explains).

    Raises:
        ConfigError: ``run.id`` is no safe name, ``run.root`` cannot be written, or a resumed
            run's ``meta.json`` is missing or unreadable.
        FileExistsError: a new run's folder exists already.
    """
    config_yaml = to_yaml(cfg)
    if resume_dir is None:
        run_dir = create_run_dir(settings.run.root, flow, settings.run.id)
        start_status(run_dir, flow, run_root=settings.run.root)
        use_gpu = settings.train.use_gpu if flow in ("pipeline", "sweep") else False
        meta = write_run_files(
            run_dir, config_yaml=config_yaml, seed=settings.seed, use_gpu=use_gpu
        )
        meta_extra = {"prefect_flow_run": link_flow_run(run_dir), **(meta_extra or {})}
        meta = {**meta, **meta_extra}
        write_json(run_dir / "meta.json", meta)
    else:
        run_dir = resume_dir
        meta = read_run_json(run_dir / "meta.json")  # before the folder is touched
        if meta is None:
            raise ConfigError(f"cannot resume {run_dir}: its meta.json (provenance) is missing")
        status = start_status(run_dir, flow, run_root=settings.run.root)
        if status["last_completed_epoch"] is not None:
            get_run_logger().info("resuming after epoch %s", status["last_completed_epoch"])
        atomic.write_text(run_dir / "config.yaml", config_yaml)
        link_flow_run(run_dir)
    get_run_logger().info("run folder %s", run_dir)
    return OpenRun(flow=flow, run_dir=run_dir, meta=meta, config_yaml=config_yaml)


def link_flow_run(run_dir: Path) -> str | None:
    """Name the Prefect flow run this runs in after its run folder (the UI lists flow runs by
    name, and Prefect's own names are random words) and record its id in ``status.json`` (an
    interrupted run's flow run is then marked cancelled: :mod:`sennflow.interrupts`); a resumed
    run's previous flow run, left running by a killed process, is marked crashed. Return the id
    (None outside a flow run). A server that refuses is a warning: the run matters more than
    how Prefect lists it."""
    import httpx
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.runtime import flow_run

    if not flow_run.id:
        return None
    previous = (read_run_json(run_dir / STATUS) or {}).get("prefect_flow_run")
    update_status(run_dir, prefect_flow_run=flow_run.id)
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, name=run_dir.name)
            if previous not in (None, flow_run.id):
                _end_killed_flow_run(client, previous, flow_run.id)
    except (httpx.HTTPError, ObjectNotFound) as err:
        get_run_logger().warning("could not update Prefect's flow runs of this run: %s", err)
        return flow_run.id
    _rename_in_logs(run_dir.name)
    return flow_run.id


def _rename_in_logs(name: str) -> None:
    """Log lines from here on name the flow run ``name``: Prefect's loggers read the name from
    the flow run context, which keeps the name the run started with."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.name == name:
        return
    started_as, context.flow_run.name = context.flow_run.name, name
    get_run_logger().info("flow run %r is named %r after its run folder", started_as, name)


def _end_killed_flow_run(client, killed: str, resuming: str) -> None:
    """Mark the flow run of a killed run (left running: nobody could end it) crashed."""
    from prefect.states import Crashed

    state = client.read_flow_run(killed).state
    if state is not None and not state.is_final():
        message = f"its process ended without a word (killed); resumed by flow run {resuming}"
        client.set_flow_run_state(killed, Crashed(message=message), force=True)


def resumed_config(flow: str, fresh, overrides: list[str], changeable: tuple[str, ...]):
    """The config and run folder of resuming the run ``run.id`` of ``flow``: its saved
    ``config.yaml``, with the overrides of ``changeable`` keys (``"run."`` stands for every
    ``run.*`` key) taken from ``fresh``, the config ``overrides`` compose. Any other override
    must leave the saved config as it was, so the run's own overrides may be repeated or left
    out; ``run.root`` and ``run.id`` locate the folder.

    Raises:
        ConfigError: no ``run.id``, no such run folder, the run completed or is still running,
            or an override would change the run's config.
    """
    from omegaconf import OmegaConf

    run = to_settings(fresh).run
    if run.id is None:
        raise ConfigError(f"--resume needs run.id=<id of the {flow} run to resume>")
    run_dir = Path(run.root) / flow / run.id
    check_resumable(run_dir)
    saved = read_run_config(run_dir)
    keys = [override_key(o) for o in overrides]
    may_change = [key for key in keys if _matches(key, changeable)]
    if len(may_change) < len(keys):
        changed = changed_keys(saved, OmegaConf.create(to_yaml(fresh)))
        if changed := {k: v for k, v in changed.items() if not _matches(k, changeable)}:
            # the keys this command's overrides name first: those are what the user changed
            given = (*keys, *(f"{key}." for key in keys))  # a group override: its keys
            named = sorted(changed, key=lambda k: not _matches(k, given))
            shown = ", ".join(
                f"{k} (saved {changed[k][0]}, now {changed[k][1]})" for k in named[:3]
            )
            allowed = [f"{key}*" if key.endswith(".") else key for key in changeable]
            allowed = f"{', '.join(allowed[:-1])} and {allowed[-1]}"
            raise ConfigError(
                f"cannot resume {run_dir} with other settings: {shown}"
                f"{', ...' if len(changed) > 3 else ''} would change. Resume uses the run's "
                f"config.yaml; pass only {allowed} overrides, or exactly the overrides the run "
                "started with"
            )
    for key in may_change:
        OmegaConf.update(saved, key, OmegaConf.select(fresh, key), force_add=True)
    saved.run.root, saved.run.id = run.root, run.id
    return saved, run_dir


def _matches(key: str, keys: tuple[str, ...]) -> bool:
    """Whether ``key`` is one of ``keys``, where ``"run."`` stands for every ``run.*`` key."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in keys)


def report_data(
    run: OpenRun,
    dataset: IngestResult,
    *,
    title: str,
    headline: dict,
    **sections,
) -> ReportData:
    """The run's ``ReportData``: what every report shows (title, headline, config, provenance,
    data), plus the flow's ``sections`` (``metrics``, ``history``, ``explanations``,
    ``search``, ``federated``, ``continual``, ``training``)."""
    from components.report import ReportData

    return ReportData(
        title=title,
        run_id=run.run_dir.name,
        headline=headline,
        config_yaml=run.config_yaml,
        meta=run.meta,
        data_meta=dataset.meta,
        class_names=list(dataset.meta["class_names"]),
        feature_shape=tuple(dataset.meta["feature_shape"]),
        **{"metrics": {}, "history": [], "explanations": None, **sections},
    )


def finish_run(
    run: OpenRun,
    settings: FlowSettings,
    report: ReportData,
    *,
    metrics: dict | None,
    files: dict[str, dict] | None = None,
    tracked: TrackedModel | None = None,
) -> RunResult:
    """Write ``metrics.json`` (unless ``metrics`` is None) and ``files`` (name -> JSON
    payload), the report and its artifacts; log the run to MLflow when tracking is on
    (``tracked`` says what besides the headline)."""
    for name, payload in (files or {}).items():
        write_json(run.run_dir / name, payload)
    if metrics is not None:
        write_json(run.run_dir / "metrics.json", metrics)
    update_status(run.run_dir, headline=report.headline)  # what `sennflow runs` shows
    path = report_task(run.run_dir, report)
    if settings.tracking.enabled and tracked is not None:
        track_task(
            settings.tracking,
            settings.run.root,
            run.run_dir,
            run.flow,
            tracked.history,
            report.headline,
            tracked.model_dir,
            tracked.trials,
        )
    return RunResult(run_dir=str(run.run_dir), report=str(path), headline=report.headline)


def headline_metrics(test: dict, outcome) -> dict:
    """The few numbers shown first: test metrics, model analyses, best epoch."""
    if test["task"] == "classification":
        keys = ("accuracy", "macro_f1", "nll", "ece")
    else:
        keys = ("clustering_accuracy", "nmi", "ari")
    headline = {f"test_{key}": test[key] for key in keys}
    if "robustness" in test:
        headline["test_certified_accuracy_l2_0.25"] = test["robustness"]["certified_accuracy"][
            "0.25"
        ]
    if "uncertainty" in test and test["uncertainty"]["auroc_wrong"] is not None:
        headline["uncertainty_auroc_wrong"] = test["uncertainty"]["auroc_wrong"]
    for state, scores in test.get("prototype_quality", {}).items():
        if state in ("trained", "untrained"):
            headline.update({f"{name}_{state}": value for name, value in scores.items()})
    headline.update(best_epoch=outcome.best_epoch, epochs_run=len(outcome.history))
    return headline


def training_summary(outcome) -> dict:
    """How training ran, for the report: resumes and the workers' nodes per attempt."""
    return {
        "resumed_at": outcome.resumed_at,
        "attempts": outcome.attempts,
        "self_distill_rounds": getattr(outcome, "self_distill_rounds", []),
    }


def check_files(explanations: dict | None) -> dict:
    """``{"checks.json": ...}``: the trust checks' verdicts and summaries, when any ran."""
    from components.explain.checks.runner import check_summaries

    checks = (explanations or {}).get("checks")
    return {"checks.json": check_summaries(checks)} if checks else {}


def explanation_headline(explanations: dict) -> dict:
    """The post-hoc method the chooser recommends, when the explain stage ranked any."""
    post_hoc = explanations.get("post_hoc")
    return {"recommended_explanation": post_hoc["recommended"]} if post_hoc else {}
