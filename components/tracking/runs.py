"""Log a finished pipeline or sweep run to MLflow; tracking never fails the run.

A pipeline run becomes one MLflow run. A sweep becomes one parent run (the sweep's config, its
best result and the retrained model) with one nested child run per Tune trial (the trial's
sampled config and per-epoch history). An unreachable tracking server, or any MLflow error while
logging, is reported once through ``warn`` and the run's own results stay as written.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from components.redact import redact_text
from components.tracking.config import TrackingConfig
from components.tracking.logging_ops import log_run_files, log_values, run_values, trial_values
from components.tracking.record import RunRecord
from components.tracking.store import (
    default_artifact_location,
    default_uri,
    http_limits,
    unreachable,
)

_LOG = logging.getLogger(__name__)
PARENT_TAG = "mlflow.parentRunId"  # how MLflow (and its UI) nests a child run


@dataclass(frozen=True)
class TrackedRun:
    """Where a logged run is: its MLflow run id, experiment id and tracking URI (credentials
    masked: it is logged and shown)."""

    run_id: str
    experiment_id: str
    uri: str

    def how_to_open(self) -> str:
        """A link to the run (server URIs), or the ``mlflow ui`` command that shows it."""
        path = f"#/experiments/{self.experiment_id}/runs/{self.run_id}"
        if self.uri.lower().startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/{path}"
        return (
            f"mlflow ui --backend-store-uri {self.uri} --host 127.0.0.1, "
            f"then open http://127.0.0.1:5000/{path}"
        )


def log_run(
    config: TrackingConfig,
    record: RunRecord,
    root: str | Path,
    warn: Callable[[str], None] = _LOG.warning,
) -> TrackedRun | None:
    """Log ``record`` to the tracking store of ``config``; None (after one ``warn``) on failure.

    Args:
        config: the tracking settings (``config.uri`` None: ``$MLFLOW_TRACKING_URI``, else
            SQLite under ``root``).
        record: the finished run.
        root: the run root (``run.root``), home of the default store.
        warn: called once with a message when the run cannot be tracked (credentials in the
            URI masked).
    """
    uri = config.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)
    reason = unreachable(uri, config.timeout_s)
    if reason is not None:
        warn(
            redact_text(
                f"MLflow tracking server {uri} is unreachable ({reason}): this run is not tracked"
            )
        )
        return None
    try:
        with http_limits():
            return _log(config, record, uri, root)
    except Exception as err:  # tracking must never fail a run whose results are written
        warn(
            redact_text(
                f"MLflow tracking to {uri} failed ({type(err).__name__}: {err}): this run is not "
                f"(fully) tracked; its results are in {record.run_dir}"
            )
        )
        return None


def _log(config: TrackingConfig, record: RunRecord, uri: str, root) -> TrackedRun:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    location = default_artifact_location(root) if uri.startswith(("sqlite:", "file:")) else None
    experiment_id = _experiment_id(client, config.experiment_for(record.flow), location)
    tags = {
        "sennflow.run_id": record.run_id,
        "sennflow.flow": record.flow,
        "sennflow.run_dir": str(Path(record.run_dir).resolve()),
    }
    run = client.create_run(experiment_id, run_name=record.run_id, tags=tags)
    run_id = run.info.run_id
    with _finished(client, run_id):
        params, metrics, headline_tags = run_values(record)
        log_values(client, run_id, params=params, metrics=metrics, tags=headline_tags)
        log_run_files(client, run_id, record.run_dir, record.model_dir)
        for trial in record.trials:
            _log_trial(client, experiment_id, run_id, record, trial)
    return TrackedRun(run_id=run_id, experiment_id=experiment_id, uri=redact_text(uri))


def _log_trial(client, experiment_id: str, parent_id: str, record: RunRecord, trial: dict):
    name = str(trial.get("trial") or "trial")
    tags = {PARENT_TAG: parent_id, "sennflow.run_id": record.run_id, "sennflow.flow": "trial"}
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    with _finished(client, run_id, failed=trial.get("status") == "failed"):
        params, metrics, trial_tags = trial_values(trial)
        log_values(client, run_id, params=params, metrics=metrics, tags=trial_tags)


def _experiment_id(client, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) if missing."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        found = client.get_experiment_by_name(name)  # another run created it meanwhile
        if found is None:
            raise
        return found.experiment_id


@contextlib.contextmanager
def _finished(client, run_id: str, failed: bool = False):
    """Mark the run FINISHED (FAILED if ``failed``) or, when logging breaks, FAILED."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
