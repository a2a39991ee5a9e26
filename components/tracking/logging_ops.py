"""What goes into one MLflow run: params, metrics (per epoch and final), tags, artifacts."""

from __future__ import annotations

import time
from pathlib import Path

from components.tracking.params import is_number, numeric, safe_key, text_values, to_params

MAX_TAG_LENGTH = 8000
# Run-folder files logged under ``run/`` beside the report (those that exist).
RUN_FILES = (
    "config.yaml",
    "meta.json",
    "metrics.json",
    "search.json",
    "genotype.json",
    "stn_schedules.json",
)
# A checkpoint's model: weights and spec. Its state.pt (optimizer state, for resuming) is not.
MODEL_SUFFIXES = (".safetensors", ".json")


def epoch_metrics(history: list[dict]):
    """MLflow ``Metric``s of per-epoch rows: every finite number of a row at step ``epoch``
    (rows without an ``epoch`` count from 1)."""
    from mlflow.entities import Metric

    now = _now_ms()
    return [
        Metric(safe_key(key), float(value), now, int(row.get("epoch", index)))
        for index, row in enumerate(history, start=1)
        for key, value in row.items()
        if key != "epoch" and is_number(value)
    ]


def final_metrics(values: dict[str, float], history: list[dict]):
    """MLflow ``Metric``s of single values (step 0); keys the history logs per epoch are left
    out, so a step-0 point never joins an epoch curve."""
    from mlflow.entities import Metric

    now = _now_ms()
    per_epoch = {safe_key(key) for row in history for key in row}
    return [Metric(k, v, now, 0) for k, v in values.items() if k not in per_epoch]


def log_values(client, run_id: str, *, params: dict, metrics: list, tags: dict) -> None:
    """Params, metrics and tags in batches (the client splits them to MLflow's batch limits)."""
    from mlflow.entities import Param, RunTag

    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, str(v)[:MAX_TAG_LENGTH]) for k, v in tags.items()],
    )


def run_values(record) -> tuple[dict, list, dict]:
    """A finished run's params (its resolved config), metrics (per epoch; headline and test
    numbers) and tags (the headline's text values)."""
    final = {**numeric(record.test_metrics(), prefix="test_"), **numeric(record.headline)}
    metrics = epoch_metrics(record.history) + final_metrics(final, record.history)
    return to_params(record.config()), metrics, text_values(record.headline)


def log_run_files(client, run_id: str, run_dir: Path, model_dir: Path | None) -> None:
    """The report (``report/``: ``report.html`` and ``figures/``), the run folder's config and
    results (``run/``) and the model's weights and spec (``model/``)."""
    run_dir = Path(run_dir)
    if (run_dir / "report.html").is_file():
        client.log_artifact(run_id, str(run_dir / "report.html"), "report")
    if (run_dir / "figures").is_dir():
        client.log_artifacts(run_id, str(run_dir / "figures"), "report/figures")
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name), "run")
    if model_dir is not None and Path(model_dir).is_dir():
        for path in sorted(Path(model_dir).iterdir()):
            if path.is_file() and path.suffix in MODEL_SUFFIXES:
                client.log_artifact(run_id, str(path), "model")


def trial_values(trial: dict) -> tuple[dict, list, dict]:
    """A Tune trial's params (its sampled config), metrics (per epoch, final) and tags."""
    final = {k: trial[k] for k in ("epochs", "val_loss", "val_accuracy") if k in trial}
    history = trial.get("history") or []
    metrics = epoch_metrics(history) + final_metrics(numeric(final), history)
    tags = {"sennflow.trial": trial.get("trial", ""), "sennflow.trial_status": trial.get("status")}
    if trial.get("error"):
        tags["sennflow.trial_error"] = trial["error"]
    return to_params(trial.get("config") or {}), metrics, {k: v for k, v in tags.items() if v}


def _now_ms() -> int:
    return int(time.time() * 1000)
