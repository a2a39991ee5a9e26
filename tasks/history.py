"""Prefect task: add the night's sweep to the history, redraw ``history.html``, and fail on an
accuracy drop past ``search.alert_drop`` (so a Prefect automation can fire on the failure)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE


@task(name="sweep-history", cache_policy=NO_CACHE, retries=0)
def history_task(folder: Path, night, alert_drop: float | None) -> Path:
    """Append ``night`` (a :class:`components.search.history.Night`) to
    ``folder/history.parquet``, write ``folder/history.html`` and a ``sweep-history`` artifact.

    Raises:
        AccuracyDropAlert: tonight's best test accuracy dropped more than ``alert_drop`` below
            the best earlier night (the history and its page are written first).
    """
    from components.report.history_page import write_history_page
    from components.search.history import AccuracyDropAlert, metric_names, record_night

    rows, alert = record_night(folder, night, alert_drop)
    page = write_history_page(folder, rows, metric_names(rows))
    create_markdown_artifact(
        key="sweep-history",
        markdown=(
            f"# Nightly sweep history\n\nnights: {len(rows)}, latest `{night.run_id}`"
            + (f"\n\n**Alert:** {alert}" if alert else "")
            + f"\n\nPage: [{page}]({page.resolve().as_uri()})  \n"
            f"Table: `{Path(folder) / 'history.parquet'}`\n"
        ),
        description="each night's best configuration and test metrics",
    )
    get_run_logger().info("sweep history: night %d, page %s", len(rows), page)
    if alert:
        raise AccuracyDropAlert(f"{alert}; history: {page}")
    return page
