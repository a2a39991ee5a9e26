"""The tracking settings (``conf/tracking``), validated when built."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass

BACKENDS = ("none", "mlflow")
INSTALL_HINT = "pip install -e '.[tracking]'"
# scheme://... or scheme:... (sqlite:///x.db, http://host:5000, databricks, postgresql://...)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


@dataclass(frozen=True)
class TrackingConfig:
    """Where and whether a finished run is logged.

    Attributes:
        backend: ``none`` (off) or ``mlflow``.
        uri: an MLflow tracking URI (``http://127.0.0.1:5000``, ``sqlite:///path/mlflow.db``,
            ...); None: ``$MLFLOW_TRACKING_URI`` (``sennflow stack up`` sets it for served
            runs), else a local SQLite store under the run root (see
            :func:`components.tracking.store.default_uri`).
        experiment: the MLflow experiment; None: ``sennflow-<flow>``.
        timeout_s: seconds to wait for an HTTP tracking server before giving up on tracking.
    """

    backend: str = "none"
    uri: str | None = None
    experiment: str | None = None
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        checks = {
            "backend": self.backend in BACKENDS,
            "uri": self.uri is None or (isinstance(self.uri, str) and bool(_URI.match(self.uri))),
            "experiment": self.experiment is None
            or (isinstance(self.experiment, str) and self.experiment.strip() != ""),
            "timeout_s": isinstance(self.timeout_s, int | float) and self.timeout_s > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"tracking.{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(
                f"{values} (backend: one of {list(BACKENDS)}; uri: a URI with a scheme, e.g. "
                "http://127.0.0.1:5000 or sqlite:///mlflow.db; timeout_s > 0)"
            )
        if self.enabled and importlib.util.find_spec("mlflow") is None:
            raise ValueError(
                f"tracking.backend=mlflow needs MLflow, which is not installed: {INSTALL_HINT}"
            )

    @property
    def enabled(self) -> bool:
        """Whether a finished run is logged."""
        return self.backend != "none"

    def experiment_for(self, flow: str) -> str:
        """The experiment a run of ``flow`` is logged to."""
        return self.experiment or f"sennflow-{flow}"
