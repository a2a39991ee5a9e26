"""The pipeline flow: ingest -> train (Ray Train) -> evaluate -> explain -> report.

Callable from Python (``pipeline(overrides=["model=mlp"])``), from the CLI (``sennflow run``) and
from the Prefect UI, where :class:`PipelineOptions` renders as a form.

A run that was interrupted, killed or failed is resumed in its own run folder
(``pipeline(overrides=["run.id=<id>"], resume=True)``, ``sennflow run --resume run.id=<id>``):
its saved ``config.yaml`` is the config, training continues from the newest checkpoint Ray Train
registered in the folder, then evaluate, explain and report run as usual.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from components import atomic
from flows.config import ConfigError, compose, to_settings, to_yaml
from flows.run_folder import (
    check_resumable,
    create_run_dir,
    start_status,
    with_run_status,
    write_json,
    write_run_files,
)
from tasks.evaluate import evaluate_task
from tasks.explain import explain_task
from tasks.ingest import ingest_task
from tasks.report import report_task
from tasks.tracking import track_task
from tasks.train import train_task

DataSource = Literal[
    "digits", "breast_cancer", "wine", "synthetic", "parts", "parquet", "csv", "image_folder"
]


class PipelineOptions(BaseModel):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    data: DataSource | None = Field(None, description="data source config (conf/data)")
    data_path: str | None = Field(
        None, description="parquet/csv: a file or fsspec URL; image_folder: the folder"
    )
    image_size: int | None = Field(None, ge=8, description="image_folder: side of the crop")
    model: str | None = Field(None, description="model config (conf/model), e.g. proto_ae, mlp")
    backbone: str | None = Field(
        None, description="protopnet / st_protopnet / resnet: conv, resnet18, vgg16, ..."
    )
    pretrained: str | None = Field(
        None, description="trunk weights: a .pth/.safetensors path or e.g. IMAGENET1K_V1"
    )
    experiment: str | None = Field(None, description="experiment preset (conf/experiment)")
    epochs: int | None = Field(None, ge=1)
    num_workers: int | None = Field(None, ge=1, description="Ray Train workers")
    use_gpu: bool | None = None
    seed: int | None = None
    tracking: Literal["none", "mlflow"] | None = Field(None, description="log to MLflow")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (tracking=mlflow)")

    def to_overrides(self) -> list[str]:
        """The Hydra overrides these options stand for."""
        keys = {
            "data": "data",
            "data_path": "data.path",
            "image_size": "data.image_size",
            "model": "model",
            "backbone": "++model.params.backbone",
            "pretrained": "++model.params.pretrained",
            "experiment": "experiment",
            "epochs": "train.epochs",
            "num_workers": "train.num_workers",
            "use_gpu": "train.use_gpu",
            "seed": "seed",
            "tracking": "tracking",
            "tracking_uri": "tracking.uri",
        }
        return options_to_overrides(self, keys)


class PipelineResult(BaseModel):
    """What a finished pipeline returns (also printed by the CLI)."""

    run_dir: str
    report: str
    headline: dict[str, float | int | str]


@flow(name="pipeline", log_prints=True)
@with_run_status
def pipeline(
    overrides: list[str] | None = None,
    options: PipelineOptions | None = None,
    resume: bool = False,
) -> PipelineResult:
    """Run ingest -> train -> evaluate -> explain -> report and return where the results are.

    Args:
        overrides: Hydra overrides, e.g. ``["model=mlp", "train.epochs=5"]``; applied after
            ``options``.
        options: the common knobs as a typed form (the Prefect UI renders it).
        resume: continue the run of ``run.id`` in its run folder (:func:`resume_config` says
            which overrides may change); a completed or still running run is refused.
    """
    all_overrides = [*(options.to_overrides() if options else []), *(overrides or [])]
    cfg, run_dir = resume_config(all_overrides) if resume else (compose(all_overrides), None)
    s = to_settings(cfg)
    # bad data, a model that does not fit it or unloadable trunk weights fail before the run
    # folder exists
    dataset = ingest_task(s.data, s.run.cache_dir)
    spec = model_spec(s, dataset.meta)
    spec.build()
    logger = get_run_logger()
    if run_dir is None:
        run_dir = create_run_dir(s.run.root, "pipeline", s.run.id)
        start_status(run_dir, "pipeline", run_root=s.run.root)
        meta = write_run_files(
            run_dir, config_yaml=to_yaml(cfg), seed=s.seed, use_gpu=s.train.use_gpu
        )
    else:
        status = start_status(run_dir, "pipeline", run_root=s.run.root)
        logger.info("resuming after epoch %s", status["last_completed_epoch"])
        atomic.write_text(run_dir / "config.yaml", to_yaml(cfg))  # train.epochs may have changed
        meta = json.loads((run_dir / "meta.json").read_text())  # the run's own provenance
    logger.info("run folder %s", run_dir)

    started = time.perf_counter()
    outcome = train_task(dataset.path, spec, s.train, run_dir, s.run, s.data.augment)
    train_seconds = time.perf_counter() - started  # explain.budget_s=auto: explain within this
    test = evaluate_task(outcome.best_checkpoint, dataset.path, s.seed)
    explanations = explain_task(
        outcome.best_checkpoint, dataset.path, s.explain, s.seed, train_seconds=train_seconds
    )

    headline = {**headline_metrics(test, outcome), **explanation_headline(explanations)}
    write_json(run_dir / "metrics.json", _metrics_json(test, outcome, dataset))
    data = report_data(
        s, run_dir, cfg, meta, dataset, outcome.history, test, explanations, headline
    )
    data.training = training_summary(outcome)
    report = report_task(run_dir, data)
    if s.tracking.enabled:
        history, model = outcome.history, outcome.best_checkpoint
        track_task(s.tracking, s.run.root, run_dir, "pipeline", history, headline, model)
    return PipelineResult(run_dir=str(run_dir), report=str(report), headline=headline)


# What ``--resume`` may change: where runs and Ray are, and how long to train.
RESUME_CHANGEABLE = ("run.", "ray.", "train.epochs")


def resume_config(overrides: list[str]):
    """The config and run folder of the interrupted pipeline run ``run.id``.

    The run's saved ``config.yaml`` is the config. Overrides of ``run.*``, ``ray.*`` and
    ``train.epochs`` apply to it (``run.root`` and ``run.id`` locate the folder); any other
    override must leave it as it was, so repeating the original overrides is allowed.

    Raises:
        ConfigError: no ``run.id``, no such run folder, the run completed or is still running,
            or an override would change the run's config.
    """
    from omegaconf import OmegaConf

    fresh = compose(overrides)
    run = to_settings(fresh).run
    if run.id is None:
        raise ConfigError("--resume needs run.id=<id of the run to resume>")
    run_dir = Path(run.root) / "pipeline" / run.id
    check_resumable(run_dir)
    saved = OmegaConf.load(run_dir / "config.yaml")
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if any(not _resume_changeable(key) for key in keys):
        changed = _changed_keys(saved, OmegaConf.create(to_yaml(fresh)))
        if changed := [key for key in changed if not _resume_changeable(key)]:
            shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
            raise ConfigError(
                f"cannot resume {run_dir} with other settings ({shown} would change): resume "
                "uses the run's config.yaml; pass only run.*, ray.* and train.epochs overrides, "
                "or exactly the overrides the run started with"
            )
    for key in keys:
        if _resume_changeable(key):
            OmegaConf.update(saved, key, OmegaConf.select(fresh, key), force_add=True)
    saved.run.root, saved.run.id = run.root, run.id
    return saved, run_dir


def _resume_changeable(key: str) -> bool:
    return key == "train.epochs" or key.startswith(RESUME_CHANGEABLE[:2])


def _changed_keys(a, b) -> list[str]:
    """Dotted keys whose values differ between two configs (either may lack the key)."""
    from omegaconf import OmegaConf

    flat_a = _flatten(OmegaConf.to_container(a, resolve=False))
    flat_b = _flatten(OmegaConf.to_container(b, resolve=False))
    return sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))


def _flatten(values, prefix: str = "") -> dict:
    if not isinstance(values, dict) or not values:
        return {prefix.rstrip("."): values}
    flat: dict = {}
    for key, value in values.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def options_to_overrides(options: BaseModel, keys: dict[str, str]) -> list[str]:
    """``field=value`` of a typed options form as Hydra overrides (``keys``: field -> key);
    unset fields are left out."""
    values = options.model_dump()
    return [
        f"{key}={_hydra_value(values[name])}"
        for name, key in keys.items()
        if values[name] is not None
    ]


def _hydra_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def model_spec(s, data_meta: dict):
    """The configured model for the ingested data's input shape and classes."""
    from components.training.checkpoint import ModelSpec

    return ModelSpec(
        name=s.model_name,
        input_shape=tuple(data_meta["feature_shape"]),
        num_classes=int(data_meta["num_classes"]),
        tiny=s.model_tiny,
        kwargs=s.model_params,
    )


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


def _metrics_json(test: dict, outcome, dataset) -> dict:
    return {
        "test": test,
        "train": {
            "best_epoch": outcome.best_epoch,
            "best_val_loss": outcome.best_val_loss,
            "stopped_early": outcome.stopped_early,
            "resumed_at": outcome.resumed_at,
            "attempts": outcome.attempts,
            "history": outcome.history,
        },
        "data": {
            "path": str(dataset.path),
            "cache_hit": dataset.cache_hit,
            "row_counts": dataset.meta["row_counts"],
            "dropped_rows": dataset.meta.get("dropped_rows", 0),
            "dropped_by_reason": dataset.meta.get("dropped_by_reason", {}),
        },
    }


def training_summary(outcome) -> dict:
    """How training ran, for the report: resumes and the workers' nodes per attempt."""
    return {"resumed_at": outcome.resumed_at, "attempts": outcome.attempts}


def explanation_headline(explanations: dict) -> dict:
    """The post-hoc method the chooser recommends, when the explain stage ranked any."""
    post_hoc = explanations.get("post_hoc")
    return {"recommended_explanation": post_hoc["recommended"]} if post_hoc else {}


def report_data(s, run_dir: Path, cfg, meta, dataset, history, test, explanations, headline):
    """Everything the run report shows (``ReportData``); ``history``: per-epoch training rows."""
    from components.report import ReportData

    return ReportData(
        title=f"sennflow pipeline: {s.model_name} on {s.data.source}",
        run_id=run_dir.name,
        headline=headline,
        metrics=test,
        history=history,
        config_yaml=to_yaml(cfg),
        meta=meta,
        data_meta=dataset.meta,
        explanations=explanations,
        class_names=list(dataset.meta["class_names"]),
        feature_shape=tuple(dataset.meta["feature_shape"]),
    )
