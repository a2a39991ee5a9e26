"""The explain flow: re-explain a trained run without retraining.

``sennflow explain runs/pipeline/<id> explain.methods=all`` loads the run's resolved config and
best checkpoint, explains the model with the configured post-hoc methods, scores and ranks them,
and writes a new run folder ``runs/explain/<id>/`` (the source run is only read) whose report
carries the source run's evaluation next to the new explanations.

The data is the dataset the run was trained on, read from the cache folder its ``metrics.json``
names: an image folder is neither hashed again nor needed any more (it may have moved, or
changed since). Only when that cache folder is gone is the configured source ingested again.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel

from components.training.checkpoint import load_spec
from flows.config import ConfigError, to_settings, to_yaml
from flows.pipeline import report_data
from flows.run_folder import create_run_dir, write_json, write_run_files
from tasks.explain import explain_task
from tasks.ingest import ingest_task
from tasks.report import report_task

# What may change when re-explaining: everything else is the trained run's and stays as it was.
CHANGEABLE = ("explain", "run", "ray", "seed")


class ExplainResult(BaseModel):
    """What a finished re-explanation returns (also printed by the CLI)."""

    run_dir: str
    report: str
    source: str
    headline: dict[str, float | int | str]


def load_run_config(source: Path, overrides: list[str]):
    """The source run's resolved config with ``overrides`` of :data:`CHANGEABLE` keys applied.

    Raises:
        ConfigError: the folder is no run folder, or an override is unknown or not changeable.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for name in ("config.yaml", "checkpoints/best/model.safetensors"):
        if not (source / name).is_file():
            raise ConfigError(f"{source} is not a finished run folder: {source / name} is missing")
    bad = [o for o in overrides if o.split("=")[0].split(".")[0].lstrip("+") not in CHANGEABLE]
    if bad:
        raise ConfigError(
            f"cannot change {bad} when re-explaining a trained run; only {list(CHANGEABLE)} keys"
        )
    cfg = OmegaConf.load(source / "config.yaml")
    OmegaConf.set_struct(cfg, True)
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"bad override in {overrides}: {err}") from err


@flow(name="explain", log_prints=True)
def explain_run(run_dir: str, overrides: list[str] | None = None) -> ExplainResult:
    """Explain the best checkpoint of ``run_dir`` again, with the explain settings of
    ``overrides`` (e.g. ``["explain.methods=[ig,kernel_shap]", "explain.eval_samples=128"]``)."""
    source = Path(run_dir)
    cfg = load_run_config(source, list(overrides or []))
    s = to_settings(cfg)
    out_dir = create_run_dir(s.run.root, "explain", s.run.id)
    get_run_logger().info("re-explaining %s into %s", source, out_dir)
    meta = write_run_files(out_dir, config_yaml=to_yaml(cfg), seed=s.seed, use_gpu=False)
    meta["source_run"] = str(source.resolve())
    write_json(out_dir / "meta.json", meta)

    dataset = _dataset(source, s)
    checkpoint = source / "checkpoints" / "best"
    metrics = _source_metrics(source)
    history = metrics.get("train", {}).get("history", [])
    train_seconds = sum(h.get("epoch_time_s", 0.0) for h in history) or None
    explanations = explain_task(
        checkpoint, dataset.path, s.explain, s.seed, run=s.run, train_seconds=train_seconds
    )
    headline = _headline(explanations)
    write_json(out_dir / "explanations.json", _summary(explanations))
    test = metrics.get("test", {})
    data = report_data(s, out_dir, cfg, meta, dataset, history, test, explanations, headline)
    data.title = f"sennflow explain: {load_spec(checkpoint).name} on {s.data.source}"
    report = report_task(out_dir, data)
    return ExplainResult(
        run_dir=str(out_dir), report=str(report), source=str(source), headline=headline
    )


def _dataset(source: Path, s):
    """The trained run's dataset (an ``IngestResult``): its recorded cache folder when that is
    still a complete dataset, else the configured source ingested (again)."""
    from components.data.errors import DataError
    from components.data.ingest import IngestResult
    from components.data.reader import load_meta

    recorded = _source_metrics(source).get("data", {}).get("path")
    if recorded:
        try:
            meta = load_meta(recorded)
        except DataError:
            get_run_logger().info("the run's dataset %s is gone: ingesting again", recorded)
        else:
            get_run_logger().info("dataset %s (the one the run was trained on)", recorded)
            return IngestResult(path=Path(recorded), meta=meta.raw, cache_hit=True)
    return ingest_task(s.data, s.run.cache_dir)


def _source_metrics(source: Path) -> dict:
    path = source / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _headline(explanations: dict) -> dict:
    post_hoc = explanations.get("post_hoc") or {}
    ranking = (post_hoc.get("ranking") or {}).get("rows") or []
    headline: dict = {"recommended_method": post_hoc.get("recommended", "n/a")}
    for row in ranking:
        headline[f"{post_hoc['ranking']['metric']}_{row['method']}"] = row["mean"]
    return headline


def _summary(explanations: dict) -> dict:
    """The numbers of the explanations (without the attribution arrays)."""
    post_hoc = explanations.get("post_hoc") or {}
    keys = ("methods", "metrics", "ranking", "recommended", "surrogate", "sp_lime", "timings")
    return {key: post_hoc.get(key) for key in keys}
