"""The predict flow: a trained run's model on inputs it has not seen.

``sennflow predict runs/pipeline/<id> new_rows.csv`` (or an image file, or a folder of images)
reads the inputs the way the run's dataset was read, predicts each one, explains a few, and
writes a new run folder ``runs/predict/<id>/`` with ``predictions.csv`` (per input: the top
classes with their probabilities, and for a prototype model the prototypes behind the
prediction) and a report. Where the inputs carry their class (the run's label column; image
folders named for the run's classes), they are scored as the evaluate stage scores a test split.

As with ``sennflow explain``, the run folder is only read, and its ``config.yaml`` is data; the
normalisation, classes and columns come from the fingerprinted dataset cache the run was
trained on (:func:`flows.explain.recorded_dataset`). A ``data=...`` override rebuilds that
cache from its source on another machine, and must give the same fingerprint. The inputs are
read and predicted before the run folder exists, so bad input leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.config import ConfigError, compose_with_defaults, to_group_config, to_settings
from flows.explain import (
    check_fits,
    data_overridden,
    from_run_config,
    group_of,
    load_run_config,
    recorded_dataset,
    run_data_overrides,
    source_metrics,
)
from flows.run import RunResult, finish_run, open_run, report_data
from flows.run_folder import check_run_dir_free, with_run_status
from tasks.ingest import ingest_task
from tasks.predict import predict_task

# What may be given besides the predict group: everything else is the trained run's.
CHANGEABLE = ("run", "seed", "data")
PREDICTIONS_FILE = "predictions.csv"


class PredictResult(RunResult):
    """What a finished predict run returns: its folder, report and headline, the run whose
    model predicted, and the predictions file."""

    source: str
    predictions: str


def predict_config(source: Path, overrides: list[str]):
    """The config of predicting with the run at ``source``: its saved config (as data) with
    this invocation's ``run`` (and ``data`` when given), and the ``predict`` group
    (``conf/predict/default.yaml`` with its overrides).

    Raises:
        ConfigError: no finished run folder, an override of a key that cannot change, or the
            run's dataset cannot be found and no ``data`` override names it.
    """
    from omegaconf import OmegaConf

    own = [o for o in overrides if group_of(o) == "predict"]
    cfg = load_run_config(
        source,
        [o for o in overrides if group_of(o) != "predict"],
        changeable=CHANGEABLE + ("predict",),
        doing="predicting with",
    )
    predict = compose_with_defaults(own, {"predict": "default"}).predict
    OmegaConf.set_struct(cfg, False)
    cfg.predict = predict
    OmegaConf.set_struct(cfg, True)
    return cfg


def predict_settings(source: Path, overrides: list[str]):
    """The config of predicting with ``source`` (:func:`predict_config`), its typed settings and
    its :class:`PredictConfig`; :class:`ConfigError` names what is wrong (a device this machine
    lacks included)."""
    from components.predict.predictions import PredictConfig

    cfg = predict_config(source, overrides)
    with from_run_config(source, overrides):
        settings = to_settings(cfg)
        config = to_group_config(cfg, "predict", PredictConfig)
    try:
        config.torch_device()
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return cfg, settings, config


@flow(name="predict", log_prints=True)
@with_run_status
def predict_run(run_dir: str, input_path: str, overrides: list[str] | None = None) -> PredictResult:
    """Predict every input of ``input_path`` (a CSV or Parquet file, an image file or a folder
    of images) with the best checkpoint of ``run_dir``; ``overrides`` set ``predict.*`` (e.g.
    ``["predict.top_k=5", "predict.skip_invalid=true"]``), ``run.*`` or name the
    run's data (``data=...``)."""
    from components.redact import redact_text
    from components.training.checkpoint import load_spec

    source = Path(run_dir)
    overrides = list(overrides or [])
    cfg, settings, config = predict_settings(source, overrides)
    check_run_dir_free(settings.run.root, "predict", settings.run.id)
    checkpoint = source / "checkpoints" / "best"
    dataset = _training_dataset(source, settings, data_overridden(overrides))
    check_fits(source, checkpoint, dataset.meta, doing="predict with")
    outcome = predict_task(checkpoint, dataset.path, input_path, config, settings.seed)

    shown = redact_text(str(input_path))  # a URL's credentials stay out of the run folder
    meta_extra = {"source_run": str(source.resolve()), "input": shown}
    run = open_run("predict", settings, cfg, meta_extra=meta_extra)
    csv_path = _write_csv(run.run_dir / PREDICTIONS_FILE, outcome.table)
    summary = outcome.summary
    report = report_data(
        run,
        dataset,
        title=f"sennflow predict: {load_spec(checkpoint).name} on {Path(input_path).name}",
        headline=_headline(summary),
        metrics=summary.get("metrics", {}),
        explanations=outcome.explanations,
        predictions={**summary, "source_run": str(source), "file": PREDICTIONS_FILE},
    )
    files = {"predictions.json": {k: v for k, v in summary.items() if k != "top_probability"}}
    result = finish_run(run, settings, report, metrics=None, files=files)
    return PredictResult(**result.model_dump(), source=str(source), predictions=str(csv_path))


def _training_dataset(source: Path, settings, overridden: bool):
    """The dataset the run was trained on (an ``IngestResult``): its recorded cache, or the
    one this invocation's ``data`` overrides ingest, which must be the same dataset.

    Raises:
        ConfigError: the data named is another dataset (another fingerprint).
    """
    from components.data.ingest import IngestResult

    logger = get_run_logger()
    if not overridden:
        path, meta = recorded_dataset(source, settings.run.cache_dir)
        logger.info("the run's dataset: %s", path)
        return IngestResult(path=path, meta=meta.raw, cache_hit=True)
    dataset = ingest_task(settings.data, settings.run.cache_dir)
    recorded = (source_metrics(source).get("data") or {}).get("path")
    if recorded is not None and Path(recorded).name != Path(dataset.path).name:
        raise ConfigError(
            f"the data named is not the dataset {source} was trained on (it is "
            f"{Path(dataset.path).name}, the run's was {Path(recorded).name}); predictions "
            "need the run's own normalisation, classes and columns. Name its data as it was "
            f"trained: {run_data_overrides(source)}"
        )
    return dataset


def _write_csv(path: Path, table) -> Path:
    """``table`` as CSV, written whole or not at all."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from components import atomic

    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink)
    return atomic.write_bytes(path, sink.getvalue().to_pybytes())


def _headline(summary: dict) -> dict:
    """Inputs predicted, files skipped, the labelled inputs' accuracy and the mean top
    probability."""
    headline: dict = {"inputs_predicted": summary["rows"]}
    if summary["bad_files"]:
        headline["files_skipped"] = len(summary["bad_files"])
    metrics = summary.get("metrics") or {}
    if metrics:
        headline["inputs_labelled"] = summary["labelled"]
    for key in ("accuracy", "clustering_accuracy"):
        if key in metrics:
            headline[key] = metrics[key]
    probabilities = summary["top_probability"]
    headline["mean_top_probability"] = sum(probabilities) / len(probabilities)
    return headline
