"""What the tracker logs about a finished run: most of it is read from the run folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True)
class RunRecord:
    """A finished pipeline or sweep run.

    Attributes:
        flow: ``pipeline`` or ``sweep`` (tags the run, names the default experiment).
        run_dir: the run folder; its ``config.yaml`` becomes the params, ``metrics.json``'s
            ``test`` section the test metrics, ``report.html`` + ``figures/`` the report.
        history: per-epoch rows of the (re)trained model (``epoch`` plus numbers).
        headline: the run's headline; numbers become metrics, strings become tags.
        model_dir: the best checkpoint folder (``model.safetensors`` + ``model.json``), or None.
        trials: sweeps only: Tune trial rows (``trial``, ``status``, ``config``, ``history``,
            ...), one nested MLflow run each.
    """

    flow: str
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    headline: dict = field(default_factory=dict)
    model_dir: Path | None = None
    trials: list[dict] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        """The run folder's name: the sennflow run id."""
        return Path(self.run_dir).name

    def config(self) -> dict:
        """The resolved config saved in the run folder ({} if there is none)."""
        path = Path(self.run_dir) / "config.yaml"
        return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}

    def test_metrics(self) -> dict:
        """The ``test`` section of the run folder's ``metrics.json`` ({} if there is none)."""
        path = Path(self.run_dir) / "metrics.json"
        return (json.loads(path.read_text()).get("test") or {}) if path.is_file() else {}
