"""Optional experiment tracking: a finished run (or sweep) logged to MLflow.

MLflow is an optional extra (``pip install -e '.[tracking]'``); it is imported only when a run is
logged, so this package imports without it. Entry points: :func:`log_run` (``runs``),
:class:`TrackingConfig` (``config``), :func:`server_command` (``server``).
"""

from components.tracking.config import BACKENDS, TrackingConfig
from components.tracking.record import RunRecord
from components.tracking.server import server_command

__all__ = ["BACKENDS", "RunRecord", "TrackingConfig", "log_run", "server_command"]


def log_run(*args, **kwargs):
    """See :func:`components.tracking.runs.log_run` (imported lazily: it needs MLflow)."""
    from components.tracking.runs import log_run as _log_run

    return _log_run(*args, **kwargs)
