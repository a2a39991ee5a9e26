"""Each trial's reported rows, kept by the sweep itself in ``<experiment>-rows/<trial>.jsonl``.

Tune keeps a trial's rows in its ``result.json``, which the driver writes in a staging folder
and copies into the experiment folder every few seconds. That copy truncates each file before
writing it, so a driver killed inside it leaves a finished trial's rows empty, although Tune's
experiment state still counts the trial as done and a resumed sweep does not rerun it.
:class:`TrialRows` appends every result the driver receives to a file of its own, one JSON line
each, so the rows survive a kill and a resumed sweep continues the same file. On storage that
is not a local filesystem (``s3://...``) it writes nothing and the rows are Tune's. The files
sit beside the experiment folder, not in it: every folder in there is one of Tune's trials.
"""

from __future__ import annotations

import json
from pathlib import Path

from ray import tune

from components.search import storage
from components.search.trial_metrics import METRICS

SUFFIX = "-rows"
FIELDS = ("training_iteration", "epoch", "prune_round", "train_loss", "exploited_from", *METRICS)


def rows_path(trial_path: str | Path) -> Path:
    """Where the rows of the trial in folder ``trial_path`` are kept."""
    trial = Path(trial_path)
    experiment = trial.parent
    return experiment.with_name(experiment.name + SUFFIX) / f"{trial.name}.jsonl"


class TrialRows(tune.Callback):
    """A Tune callback appending each reported result's :data:`FIELDS` and the ``config`` it
    was trained with to :func:`rows_path`."""

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if not storage.is_local(trial.storage.storage_filesystem):
            return
        path = rows_path(trial.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {k: _plain(result[k]) for k in FIELDS if result.get(k) is not None}
        row["config"] = result.get("config", {})
        with path.open("a") as rows:
            rows.write(json.dumps(row, default=str) + "\n")


def read_rows(trial_path: str | Path) -> list[dict] | None:
    """The trial's rows in the order reported, or None when it has no file (remote storage, or
    an experiment started before the sweep kept them). A line cut short by a kill is skipped."""
    path = rows_path(trial_path)
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def latest_per_iteration(rows: list[dict]) -> list[dict]:
    """One row per ``training_iteration``, the last reported, in iteration order: a trial
    restored from its checkpoint reports again the iterations after it."""
    latest = {row.get("training_iteration", i): row for i, row in enumerate(rows)}
    return [latest[k] for k in sorted(latest)]


def _plain(value):
    return value if isinstance(value, str | bool | int) else float(value)
