"""Prefect task: write the run's HTML report and publish its headline as Prefect artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE


@task(name="report", cache_policy=NO_CACHE)
def report_task(run_dir: Path, data) -> Path:
    """Write ``report.html`` + figures, and a markdown and a table artifact pointing at it."""
    from components.report import write_report

    path = write_report(run_dir, data)
    rows = [{"metric": k, "value": _fmt(v)} for k, v in data.headline.items()]
    table = "\n".join(f"| {r['metric']} | {r['value']} |" for r in rows)
    key = "".join(c if c.isalnum() else "-" for c in data.run_id.lower())
    create_markdown_artifact(
        key=f"report-{key}"[:100],
        markdown=(
            f"# {data.title}\n\n| metric | value |\n|---|---|\n{table}\n\n"
            f"Report: [{path}]({path.resolve().as_uri()})  \nRun folder: `{run_dir}`\n"
        ),
        description=f"sennflow run {data.run_id}",
    )
    create_table_artifact(table=rows, key=f"metrics-{key}"[:100], description="headline metrics")
    get_run_logger().info("report written to %s", path)
    return path


@task(name="circuit", cache_policy=NO_CACHE)
def circuit_task(checkpoint: Path | None) -> dict | None:
    """The report's neural circuit diagram of the trained model in ``checkpoint``
    (:func:`components.report.circuit.checkpoint_circuit`); None without a checkpoint.

    A model the tracer cannot draw costs the report its diagram, not the finished run: the
    failure is logged as a warning.
    """
    if checkpoint is None:
        return None
    from components.report.circuit import checkpoint_circuit

    try:
        return checkpoint_circuit(checkpoint)
    except Exception as err:  # any model code may raise; the run is done
        get_run_logger().warning(
            "no circuit diagram in the report: %s: %s", type(err).__name__, err
        )
        return None


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
