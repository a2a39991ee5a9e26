"""Run folders: ``runs/<flow>/<run-id>/`` with the resolved config and provenance beside outputs."""

from __future__ import annotations

import json
import platform
import secrets
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "sennflow",
    "torch",
    "ray",
    "prefect",
    "dask",
    "pyarrow",
    "hydra-core",
    "numpy",
    "captum",
)


def new_run_id() -> str:
    """``<UTC timestamp>-<random suffix>``: sortable and unique across concurrent runs."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def create_run_dir(root: str | Path, flow: str, run_id: str | None) -> Path:
    """Create a fresh run folder; never reuse one, so nothing written earlier is overwritten.

    Raises:
        ConfigError: ``run_id`` is no safe folder name (it would leave ``root/flow``), or
            ``root`` cannot be written (read-only, full, not a folder).
        FileExistsError: the folder exists already.
    """
    from flows.config import ConfigError, check_run_id

    run_dir = Path(root) / flow / (check_run_id(run_id) or new_run_id())
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()
    except OSError as err:  # read-only, full, or a file in the way: exit 2, naming the path
        if isinstance(err, FileExistsError) and run_dir.is_dir():
            raise FileExistsError(
                f"run folder {run_dir} already exists; choose another run.id or leave it unset"
            ) from err
        raise ConfigError(f"run.root={root}: cannot create {run_dir}: {err.strerror}") from err
    return run_dir


def git_sha() -> str:
    """The checkout's commit (with ``-dirty`` for local changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_summary(use_gpu: bool) -> str:
    """Where training ran, as far as the driver can tell."""
    import torch

    if use_gpu and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def write_run_files(run_dir: Path, *, config_yaml: str, seed: int, use_gpu: bool) -> dict:
    """Write ``config.yaml`` and ``meta.json``; return the meta dict."""
    (run_dir / "config.yaml").write_text(config_yaml)
    meta = {
        "run_id": run_dir.name,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "seeds": {"global": seed},
        "device": device_summary(use_gpu),
    }
    write_json(run_dir / "meta.json", meta)
    return meta


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)
