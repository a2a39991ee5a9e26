"""Packaging: a non-editable install carries every package and ``conf/``, and runs from any
folder (``pip install .`` from a clone, or a wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODE = ("components", "tasks", "flows", "sennflow", "ops")  # the importable top-level packages
# what a wheel is built from (the rest of a clone: tests, bench, infra, is not installed)
SOURCES = ("pyproject.toml", "README.md", "conf", *CODE)


def listed_packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def source_packages(root: Path = ROOT) -> set[str]:
    """Every folder under the code packages that holds a Python module, as a package name."""
    return {
        ".".join(path.parent.relative_to(root).parts)
        for top in CODE
        for path in (root / top).rglob("*.py")
        if "__pycache__" not in path.parts
    }


def test_pyproject_lists_every_package_and_installs_conf_as_sennflow_data(tmp_path):
    listed = listed_packages()
    missing = source_packages() - set(listed)
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "sennflow.conf" in listed and pyproject["package-dir"]["sennflow.conf"] == "conf"
    (tmp_path / "components" / "new").mkdir(parents=True)  # the check sees a new package
    (tmp_path / "components" / "new" / "x.py").touch()
    assert source_packages(tmp_path) == {"components.new"}


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the source tree (the working tree stays free of build output)."""
    source, skip = tmp_path / "source", shutil.ignore_patterns("__pycache__")
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    command = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist"]
    subprocess.run([*command, source], check=True, capture_output=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("sennflow-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment with only ``wheel`` installed; the dependencies come from this
    environment's site-packages through a ``.pth`` file, so nothing is downloaded."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    subprocess.run([*pip, "install", "--no-deps", "-q", wheel], check=True, timeout=120)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # appended after the venv's own site-packages: the wheel's packages win
    (Path(site) / "project-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.ray
def test_a_wheel_installed_elsewhere_runs_the_tiny_pipeline(tmp_path, prefect_harness, ray_session):
    import ray
    from prefect.settings import PREFECT_API_URL

    venv = fresh_venv(tmp_path, build_wheel(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()  # this session's server, not a new one
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import flows.config as c; print(c.__file__, c.CONF_DIR)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert [Path(p).is_relative_to(venv) for p in where] == [True, True], where
    proc = subprocess.run(
        [
            venv / "bin" / "sennflow", "run", "experiment=tiny",
            f"ray.address={ray.get_runtime_context().gcs_address}",  # no Ray of its own to start
        ],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (elsewhere / "runs" / "pipeline").iterdir()
    assert (run_dir / "report.html").is_file() and (run_dir / "metrics.json").is_file()
