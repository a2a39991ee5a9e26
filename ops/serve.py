"""Serve the deployments of ``infra/prefect.yaml`` from one process: the laptop path.

``prefect deploy --prefect-file infra/prefect.yaml --all`` registers the same deployments for a
work pool of type ``process`` (a worker then runs them); :func:`serve_deployments` registers them
with this process as their runner instead, so ``sennflow stack up`` (or ``python -m
ops.serve``) is all a laptop needs. Both read the one file, so the deployments, their default
parameters and schedules (with their timezone) cannot drift apart. Parameter schemas are
enforced: a run created with an invalid parameter is rejected by the server.

``{{ $SENNFLOW_RAY_ADDRESS }}`` in a deployment's overrides is replaced by that environment
variable; when it is unset, the override is dropped and each run starts its own local Ray.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import yaml


def project_root() -> Path:
    """The source tree these packages run from; installed from a wheel (no ``infra/`` beside
    them), the working folder, which then must hold ``infra/prefect.yaml`` to serve."""
    source = Path(__file__).resolve().parent.parent
    return source if (source / "infra" / "prefect.yaml").is_file() else Path.cwd()


ROOT = project_root()
PREFECT_FILE = ROOT / "infra" / "prefect.yaml"
RAY_ADDRESS_PLACEHOLDER = "{{ $SENNFLOW_RAY_ADDRESS }}"


def load_flow(entrypoint: str):
    """The flow object of an entrypoint such as ``flows/pipeline.py:pipeline``."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def resolve_parameters(parameters: dict) -> dict:
    """A deployment's parameters with the Ray-address placeholder filled in (or dropped)."""
    address = os.environ.get("SENNFLOW_RAY_ADDRESS")
    resolved = dict(parameters)
    if "overrides" in resolved:
        resolved["overrides"] = [
            o.replace(RAY_ADDRESS_PLACEHOLDER, address) if address else o
            for o in resolved["overrides"]
            if address or RAY_ADDRESS_PLACEHOLDER not in o
        ]
    return resolved


def deployment_entries(prefect_file: Path = PREFECT_FILE) -> list[dict]:
    """The ``deployments`` entries of ``prefect_file`` as written (placeholders unresolved).

    Raises:
        FileNotFoundError: no such file (an installed package has no ``infra/``: serve from
            the source tree, or from a folder holding ``infra/prefect.yaml``).
    """
    if not prefect_file.is_file():
        raise FileNotFoundError(
            f"no deployments file {prefect_file}: serving reads infra/prefect.yaml of the "
            "source tree (or of the working folder when sennflow is installed from a wheel)"
        )
    return yaml.safe_load(prefect_file.read_text())["deployments"]


def runner_deployments(prefect_file: Path = PREFECT_FILE) -> list:
    """One ``RunnerDeployment`` per entry of ``prefect_file``."""
    from prefect.schedules import Cron

    deployments = []
    for entry in deployment_entries(prefect_file):
        schedules = [Cron(s["cron"], timezone=s["timezone"]) for s in entry.get("schedules", [])]
        deployments.append(
            load_flow(entry["entrypoint"]).to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                parameters=resolve_parameters(entry.get("parameters", {})),
                schedules=schedules or None,
                enforce_parameter_schema=True,
            )
        )
    return deployments


def serve_deployments(prefect_file: Path = PREFECT_FILE, limit: int | None = 1) -> None:
    """Register every deployment and run their flow runs here until stopped (``limit``: at
    most that many runs at once; one by default, as the flows share this machine's cores)."""
    from prefect import serve

    serve(*runner_deployments(prefect_file), limit=limit)


if __name__ == "__main__":
    serve_deployments()
