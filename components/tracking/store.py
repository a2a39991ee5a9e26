"""Where runs are tracked: the default local store, and whether a tracking server answers.

The default store is SQLite (``sqlite:///<run.root>/mlflow.db``), not MLflow's ``./mlruns``
file store: MLflow 3.17 put the file store in maintenance mode and refuses to open it (an
``MlflowException``) unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set. SQLite needs no server and
``mlflow ui --backend-store-uri sqlite:///...`` opens it. Artifacts of that store go to
``<run.root>/mlartifacts``, so nothing lands outside the run root.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from pathlib import Path

# MLflow retries an HTTP request 7 times with exponential backoff (minutes against a dead
# server); a finished run should not wait that long to say tracking failed.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def default_uri(root: str | Path) -> str:
    """The local SQLite tracking store under the run root ``root``."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def default_artifact_location(root: str | Path) -> str:
    """Where the default store keeps artifacts (a ``file://`` URI under ``root``)."""
    return (Path(root).resolve() / "mlartifacts").as_uri()


def is_http(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (``http://`` / ``https://``)."""
    return uri.lower().startswith(("http://", "https://"))


def unreachable(uri: str, timeout_s: float) -> str | None:
    """Why the tracking server at ``uri`` cannot be reached, or None when it answers (any HTTP
    status counts: the server is there). Non-HTTP URIs are not probed."""
    if not is_http(uri):
        return None
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as err:  # URLError, timeouts, refused connections, bad URLs
        return str(getattr(err, "reason", err))


@contextlib.contextmanager
def http_limits():
    """Bound MLflow's HTTP retries and timeouts while logging, unless the user set them."""
    previous = {key: os.environ.get(key) for key in HTTP_LIMITS}
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
