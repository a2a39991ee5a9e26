"""The nightly sweep's history: one row per night in ``<run.root>/sweep/history.parquet``.

Each row holds the night's run id, time (UTC), search method, model, dataset source and content
fingerprint, the best configuration (JSON), the headline (JSON) and one ``float64`` column per
numeric headline metric (``test_accuracy``, ``test_ece``, ``best_val_loss``, ``trials`` ...), so
the table reads straight into pandas or DuckDB. A metric that appears on a later night adds a
column (earlier nights hold null there); a night run again under the same run id replaces its
row. The file is rewritten whole through a temporary sibling and a rename, so a reader never
sees half of it; nights are expected one at a time (a nightly schedule), not concurrently.

The alert: a night whose best test accuracy lies more than ``alert_drop`` below the best of all
earlier nights in the table gets a message (kept in its row's ``alert`` column), which the
sweep's final task raises as :class:`AccuracyDropAlert`. The first night has nothing to drop
from, so it never alerts.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components import atomic

HISTORY_FILE = "history.parquet"
ALERT_METRIC = "test_accuracy"
FIXED_COLUMNS = (
    "run_id",
    "time",
    "method",
    "model",
    "dataset",
    "dataset_fingerprint",
    "best_config",
    "headline",
    "alert",
)
_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        *((name, pa.string()) for name in FIXED_COLUMNS[2:]),
    ]
)


class HistoryError(ValueError):
    """The history file cannot be read, or a night's row cannot be written to it."""


class AccuracyDropAlert(RuntimeError):
    """Tonight's best test accuracy dropped more than ``search.alert_drop`` below the best of
    the earlier nights (the message says by how much, and which night holds the best)."""


@dataclass(frozen=True)
class Night:
    """One night's sweep, as the history keeps it.

    Attributes:
        run_id: the sweep's run folder name.
        method: the search method.
        model: the retrained model's registry name.
        dataset: the dataset source (``digits``, ``image_folder`` ...).
        dataset_fingerprint: the ingested dataset's content fingerprint.
        best_config: the best trial's sampled values.
        headline: the run's headline (numeric entries become metric columns).
        time: when the night finished (UTC).
    """

    run_id: str
    method: str
    model: str
    dataset: str
    dataset_fingerprint: str
    best_config: Mapping
    headline: Mapping
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def metrics(self) -> dict[str, float]:
        """The headline's numbers (booleans and text left out)."""
        return {
            key: float(value)
            for key, value in self.headline.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }


def read_history(folder: Path | str) -> list[dict]:
    """The nights in ``folder/history.parquet``, oldest first (``[]`` without the file).

    Raises:
        HistoryError: the file exists but is not a readable Parquet table.
    """
    path = Path(folder) / HISTORY_FILE
    table = _read_table(path)
    return [] if table is None else sorted(table.to_pylist(), key=lambda row: row["time"])


def drop_alert(earlier: list[dict], night: Night, alert_drop: float | None) -> str | None:
    """Why ``night`` alerts, or None: its ``test_accuracy`` lies more than ``alert_drop`` below
    the best ``test_accuracy`` of the ``earlier`` nights (rows of :func:`read_history`; the
    night's own run id is left out). None when ``alert_drop`` is None or nothing compares."""
    tonight = night.metrics().get(ALERT_METRIC)
    previous = [
        row for row in earlier if row["run_id"] != night.run_id and _finite(row.get(ALERT_METRIC))
    ]
    if alert_drop is None or tonight is None or not previous:
        return None
    best = max(previous, key=lambda row: row[ALERT_METRIC])
    drop = best[ALERT_METRIC] - tonight
    if not drop > alert_drop:
        return None
    return (
        f"best {ALERT_METRIC} {tonight:.4f} of sweep {night.run_id} is {drop:.4f} below the "
        f"previous best {best[ALERT_METRIC]:.4f} (sweep {best['run_id']}), more than "
        f"search.alert_drop={alert_drop}"
    )


def append_night(folder: Path | str, night: Night, alert: str | None = None) -> list[dict]:
    """Add ``night`` (with its ``alert`` message, if any) to ``folder/history.parquet``,
    replacing an earlier row of the same run id; returns every night, oldest first.

    Raises:
        HistoryError: the existing file is unreadable, or a metric is named like a fixed column.
    """
    folder = Path(folder)
    path = folder / HISTORY_FILE
    new = _night_table(night, alert)
    old = _read_table(path)
    if old is not None:
        old = old.filter(pc.field("run_id") != night.run_id)
        try:
            new = pa.concat_tables([old, new], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise HistoryError(f"cannot add tonight's row to {path}: {err}") from err
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    pq.write_table(new, buffer)
    atomic.write_bytes(path, buffer.getvalue())
    return sorted(new.to_pylist(), key=lambda row: row["time"])


def record_night(
    folder: Path | str, night: Night, alert_drop: float | None
) -> tuple[list[dict], str | None]:
    """Check ``night`` against the earlier nights, then append it with the verdict.

    Returns:
        Every night (oldest first) and the alert message (None: no alert).
    """
    alert = drop_alert(read_history(folder), night, alert_drop)
    return append_night(folder, night, alert), alert


def metric_names(rows: list[dict]) -> list[str]:
    """The metric columns of history ``rows``: ``test_accuracy`` (the alert's) first, then
    the others in the order they first appeared."""
    names: dict[str, None] = {}
    for row in rows:
        names |= {key: None for key in row if key not in FIXED_COLUMNS}
    return sorted(names, key=lambda name: name != ALERT_METRIC)


def _night_table(night: Night, alert: str | None) -> pa.Table:
    metrics = night.metrics()
    clashes = sorted(set(metrics) & set(FIXED_COLUMNS))
    if clashes:
        raise HistoryError(f"headline metrics {clashes} are named like history columns")
    row = {
        "run_id": night.run_id,
        "time": night.time.astimezone(UTC),
        "method": night.method,
        "model": night.model,
        "dataset": night.dataset,
        "dataset_fingerprint": night.dataset_fingerprint,
        "best_config": json.dumps(dict(night.best_config), sort_keys=True, default=str),
        "headline": json.dumps(dict(night.headline), sort_keys=True, default=str),
        "alert": alert,
        **metrics,
    }
    schema = _SCHEMA
    for name in metrics:
        schema = schema.append(pa.field(name, pa.float64()))
    return pa.Table.from_pylist([row], schema=schema)


def _read_table(path: Path) -> pa.Table | None:
    if not path.exists():
        return None
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise HistoryError(
            f"cannot read the sweep history {path}: {err}; move it aside to start a new one"
        ) from err


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
