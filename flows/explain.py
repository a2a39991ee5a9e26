"""The explain flow: re-explain a trained run without retraining.

``sennflow explain runs/pipeline/<id> explain.methods=all`` loads the run's resolved config and
best checkpoint, explains the model with the configured post-hoc methods, scores and ranks them,
and writes a new run folder ``runs/explain/<id>/`` (the source run is only read) whose report
carries the source run's evaluation next to the new explanations.

The explained folder is not trusted (it may have been downloaded): where output goes, the dataset
cache and the Ray to join come from this invocation's defaults and overrides (``run.*``,
``ray.*``), never from the folder's ``config.yaml``, whose values are read as data (no
``${oc.env:...}`` is resolved). The data is the dataset the run was trained on, read from the
fingerprinted cache folder its ``metrics.json`` names (looked up first under this invocation's
``run.cache_dir``, by name): an image folder is neither hashed again nor needed any more. Only an
explicit ``data=...``/``data.*`` override ingests a source, the one of this invocation; the log
says which of the two it is.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from pathlib import Path

from prefect import flow, get_run_logger

from components.training.checkpoint import load_spec
from flows.config import ConfigError, as_literal, compose, to_settings
from flows.config_errors import override_key, unknown_key_problem
from flows.run import (
    RunResult,
    check_files,
    explanation_headline,
    finish_run,
    open_run,
    report_data,
)
from flows.run_folder import check_run_dir_free, read_run_config, read_run_json, with_run_status
from tasks.explain import explain_task
from tasks.ingest import ingest_task
from tasks.report import circuit_task

# What may change when re-explaining: everything else is the trained run's and stays as it was.
CHANGEABLE = ("explain", "run", "ray", "seed", "data")
# Composed from this invocation (defaults + overrides), never read from the explained folder.
INVOCATION = ("run", "ray")


class ExplainResult(RunResult):
    """What a finished re-explanation returns (also printed by the CLI): the new run folder
    and report, and the run it re-explained."""

    source: str


def load_run_config(
    source: Path,
    overrides: list[str],
    changeable: tuple[str, ...] = CHANGEABLE,
    doing: str = "re-explaining",
):
    """The config of re-explaining ``source``: its saved config (as data) with ``run`` and
    ``ray`` (and ``data`` when overridden) composed from this invocation, and the ``explain`` /
    ``seed`` overrides applied. Another flow that uses a trained run (``sennflow predict``)
    names the groups it lets change and what it is ``doing``, for the message.

    Raises:
        ConfigError: the folder is no run folder, an override is unknown or not changeable, or
            the run's dataset cache cannot be used and no ``data`` override names another.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    for name in ("config.yaml", "checkpoints/best/model.safetensors"):
        if not (source / name).is_file():
            raise ConfigError(
                f"{source} is not a finished run folder: {source / name} is missing"
                + _enclosing_run_hint(source)
            )
    bad = [o for o in overrides if group_of(o) not in changeable]
    if bad:
        raise ConfigError(
            f"cannot change {bad} when {doing} a trained run; only {list(changeable)} keys"
        )
    cfg = _saved_config(source)
    current = compose([o for o in overrides if group_of(o) in (*INVOCATION, "data")])
    taken = (*INVOCATION, "data") if data_overridden(overrides) else INVOCATION
    for group in taken:
        cfg[group] = OmegaConf.to_container(current[group], resolve=False)
    OmegaConf.set_struct(cfg, True)
    rest = [o for o in overrides if group_of(o) not in (*INVOCATION, "data")]
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(rest))
    except ConfigKeyError as err:  # a key the run's config lacks
        plain = OmegaConf.to_container(cfg, resolve=False)
        raise ConfigError(unknown_key_problem(err.full_key, rest, plain)) from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override in {overrides}: {err}") from err
    if not data_overridden(overrides):
        recorded_dataset(source, current.run.cache_dir)
    return cfg


def explain_config(source: Path, overrides: list[str]):
    """The config of re-explaining ``source`` (:func:`load_run_config`) and its typed settings;
    :class:`ConfigError` names what is wrong."""
    cfg = load_run_config(source, overrides)
    with from_run_config(source, overrides):
        return cfg, to_settings(cfg)


@contextlib.contextmanager
def from_run_config(source: Path, overrides: list[str]) -> Iterator[None]:
    """Say where a ``ConfigError`` raised inside came from: a value of the run's saved
    ``config.yaml``, or one of the ``overrides`` given for it."""
    try:
        yield
    except ConfigError as err:
        given = f" and the overrides {overrides}" if overrides else ""
        raise ConfigError(f"{err} (from {source / 'config.yaml'}{given})") from err


def data_overridden(overrides: list[str]) -> bool:
    """Whether ``overrides`` name the data (``data=<source>`` or ``data.<key>=...``)."""
    return any(group_of(o) == "data" for o in overrides)


def recorded_dataset(source: Path, cache_dir: str | Path):
    """The dataset folder and meta (``DatasetMeta``) the run at ``source`` was trained on: the
    cache folder its ``metrics.json`` names, looked up by name under ``cache_dir`` first, used
    only when it is a complete fingerprinted dataset cache with the rows the run recorded.

    Raises:
        ConfigError: no such dataset; the message says how to name the data instead.
    """
    data = source_metrics(source).get("data") or {}
    hint = f"name the run's data, as for sennflow run: {run_data_overrides(source)}"
    if not isinstance(data.get("path"), str):
        raise ConfigError(f"{source / 'metrics.json'} records no dataset: {hint}")
    recorded = Path(data["path"])
    problems = []
    for folder in dict.fromkeys((Path(cache_dir) / recorded.name, recorded)):
        meta, problem = _checked_cache(folder, data.get("row_counts"))
        if problem is None:
            return folder, meta
        problems.append(f"{folder}: {problem}")
    raise ConfigError(f"the run's dataset cannot be used ({'; '.join(problems)}); {hint}")


def run_data_overrides(source: Path) -> str:
    """The ``data`` overrides of the run's saved config that differ from the defaults, as one
    could type them (``data=csv data.path=/data/loans.csv data.label_column=decision``); a value
    that would read the environment (``${...}``, from a folder that may be a stranger's) is left
    as ``<key>``. ``data=<source> data.path=<path>`` when the config names no data."""
    from omegaconf import OmegaConf

    from components.data.spec import SOURCES, DataSpec, source_fields
    from flows.config_errors import shell_override

    try:
        saved = OmegaConf.to_container(read_run_config(source), resolve=False).get("data")
    except ConfigError:  # no config.yaml to read
        saved = None
    if not isinstance(saved, dict):
        saved = {}
    name = saved.get("source")
    if name not in SOURCES:
        return "data=<source> data.path=<path>"
    defaults = DataSpec().to_dict()
    words = [f"data={name}"]
    for key in source_fields(name):
        value = saved.get(key)
        if key == "source" or value is None or value == defaults.get(key):
            continue
        text = f"[{','.join(map(str, value))}]" if isinstance(value, list) else str(value)
        if "${" in text:
            words.append(f"data.{key}=<{key}>")
        elif isinstance(value, list | bool | int | float):
            words.append(
                shlex.quote(f"data.{key}={text.lower() if isinstance(value, bool) else text}")
            )
        else:
            words.append(shell_override(f"data.{key}", text))
    return " ".join(words)


def _checked_cache(folder: Path, row_counts: dict | None):
    """``(meta, None)`` for a complete dataset cache folder (its name is the fingerprint its
    meta records) with ``row_counts``, else ``(None, why not)``."""
    from components.data.errors import DataError
    from components.data.reader import load_meta

    try:
        meta = load_meta(folder)
    except DataError as err:
        return None, str(err).removeprefix(f"{folder}: ")  # the caller names the folder
    source = (meta.raw.get("source") or {}).get("source")
    if folder.name != f"{source}-{meta.fingerprint[:16]}":
        return None, "not a fingerprinted dataset cache (its name does not match its meta.json)"
    if row_counts is not None and row_counts != meta.raw.get("row_counts"):
        return None, f"row counts {meta.raw.get('row_counts')} differ from the run's {row_counts}"
    return meta, None


def _saved_config(source: Path):
    """The folder's ``config.yaml`` as data: every ``${...}`` in it stays text."""
    from omegaconf import OmegaConf

    saved = read_run_config(source)
    return OmegaConf.create(as_literal(OmegaConf.to_container(saved, resolve=False)))


def _enclosing_run_hint(path: Path) -> str:
    """``"; did you mean <run folder>?"`` when ``path`` lies inside a run folder (a checkpoint
    folder or the report named instead of the run)."""
    for parent in list(path.parents)[:3]:
        if (parent / "config.yaml").is_file() and (parent / "checkpoints").is_dir():
            return f"; did you mean the run folder {parent}?"
    return ""


def group_of(override: str) -> str:
    """The top-level config group an override sets (``data`` of ``data.path=x``)."""
    return override_key(override).split(".")[0]


@flow(name="explain", log_prints=True)
@with_run_status
def explain_run(run_dir: str, overrides: list[str] | None = None) -> ExplainResult:
    """Explain the best checkpoint of ``run_dir`` again, with the explain settings of
    ``overrides`` (e.g. ``["explain.methods=[ig,kernel_shap]", "explain.eval_samples=128"]``)."""
    source = Path(run_dir)
    overrides = list(overrides or [])
    cfg, settings = explain_config(source, overrides)
    check_run_dir_free(settings.run.root, "explain", settings.run.id)
    checkpoint = source / "checkpoints" / "best"
    dataset = _dataset(source, settings, data_overridden(overrides))
    check_fits(source, checkpoint, dataset.meta)
    get_run_logger().info("re-explaining %s", source)
    meta_extra = {"source_run": str(source.resolve())}
    run = open_run("explain", settings, cfg, meta_extra=meta_extra)

    metrics = source_metrics(source)
    history = metrics.get("train", {}).get("history", [])
    train_seconds = training_seconds(metrics)
    explanations = explain_task(
        checkpoint,
        dataset.path,
        settings.explain,
        settings.seed,
        run=settings.run,
        train_seconds=train_seconds,
    )
    report = report_data(
        run,
        dataset,
        title=f"sennflow explain: {load_spec(checkpoint).name} on {settings.data.source}",
        headline=_headline(explanations),
        metrics=metrics.get("test", {}),
        history=history,
        explanations=explanations,
        circuit=circuit_task(checkpoint),
    )
    files = {"explanations.json": _summary(explanations), **check_files(explanations)}
    result = finish_run(run, settings, report, metrics=None, files=files)
    return ExplainResult(**result.model_dump(), source=str(source))


def _dataset(source: Path, settings, overridden: bool):
    """The data to explain on (an ``IngestResult``): the source of this invocation's ``data``
    overrides, else the run's recorded dataset cache (:func:`recorded_dataset`)."""
    from components.data.ingest import IngestResult
    from components.redact import redact_text

    logger = get_run_logger()
    if overridden:
        where = redact_text(settings.data.path or settings.data.source)
        logger.info("data: %s, named by this invocation's data overrides", where)
        return ingest_task(settings.data, settings.run.cache_dir)
    path, meta = recorded_dataset(source, settings.run.cache_dir)
    logger.info("data: %s, the fingerprinted dataset cache the run was trained on", path)
    return IngestResult(path=path, meta=meta.raw, cache_hit=True)


def check_fits(source: Path, checkpoint: Path, data_meta: dict, doing: str = "explain") -> None:
    """Refuse data the run's model was not built for, before a run folder is opened (what
    the message tells the user to ``doing`` on is the run's own data).

    Raises:
        ConfigError: The dataset's rows have another shape, or it has other classes; the
            message spells the run's own data overrides.
    """
    spec = load_spec(checkpoint)
    shape, classes = list(data_meta["feature_shape"]), int(data_meta["num_classes"])
    if (list(spec.input_shape), spec.num_classes) == (shape, classes):
        return
    raise ConfigError(
        f"the model of {source} takes inputs of shape {list(spec.input_shape)} and tells "
        f"{spec.num_classes} classes apart, but the data named has rows of shape {shape} and "
        f"{classes} classes; {doing} it on the data it was trained on, as for sennflow run: "
        f"{run_data_overrides(source)}"
    )


def source_metrics(source: Path) -> dict:
    """The ``metrics.json`` of the run folder ``source`` ({} where it has none)."""
    return read_run_json(source / "metrics.json") or {}


def training_seconds(metrics: dict) -> float | None:
    """The training stage's wall time of a run's ``metrics.json`` (``train.wall_s``; a run
    from before it was recorded: the sum of its epochs' times), None where neither is there."""
    train = metrics.get("train") or {}
    if train.get("wall_s") is not None:
        return float(train["wall_s"])
    return sum(h.get("epoch_time_s", 0.0) for h in train.get("history", [])) or None


def _headline(explanations: dict) -> dict:
    """The recommended method and every method's score on the ranking metric."""
    post_hoc = explanations.get("post_hoc") or {}
    ranking = (post_hoc.get("ranking") or {}).get("rows") or []
    headline: dict = explanation_headline(explanations) or {"recommended_explanation": "n/a"}
    for row in ranking:
        headline[f"{post_hoc['ranking']['metric']}_{row['method']}"] = row["mean"]
    return headline


def _summary(explanations: dict) -> dict:
    """The numbers of the explanations (without the attribution arrays)."""
    post_hoc = explanations.get("post_hoc") or {}
    keys = ("methods", "metrics", "ranking", "recommended", "surrogate", "sp_lime", "timings")
    return {key: post_hoc.get(key) for key in keys}
