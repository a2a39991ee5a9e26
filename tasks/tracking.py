"""Prefect task: log a finished run to MLflow (``tracking=mlflow``); never fails the flow."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE


@task(name="track", cache_policy=NO_CACHE)
def track_task(
    tracking,
    root: str,
    run_dir: Path,
    flow: str,
    history: list[dict],
    headline: dict,
    model_dir: Path | None,
    trials: list[dict] | None = None,
) -> str | None:
    """Log the finished run in ``run_dir`` (params, per-epoch metrics, report, model; a sweep's
    ``trials`` as nested runs) and return the MLflow run id, or None when it could not be
    tracked (said once as a warning).

    Args:
        tracking: ``components.tracking.TrackingConfig``.
        root: the run root (``run.root``), home of the default local store.
        run_dir: the run folder, report and metrics already written.
        flow: ``pipeline`` or ``sweep``.
        history: per-epoch rows of the (re)trained model.
        headline: the run's headline metrics.
        model_dir: the best checkpoint folder, or None.
        trials: sweeps: the Tune trial rows.
    """
    from components.tracking import RunRecord, log_run

    logger = get_run_logger()
    record = RunRecord(
        flow=flow,
        run_dir=Path(run_dir),
        history=history,
        headline=headline,
        model_dir=Path(model_dir) if model_dir is not None else None,
        trials=trials or [],
    )
    tracked = log_run(tracking, record, root, warn=logger.warning)
    if tracked is None:
        return None
    logger.info("MLflow run %s logged to %s", tracked.run_id, tracked.uri)
    logger.info("open it: %s", tracked.how_to_open())
    return tracked.run_id
