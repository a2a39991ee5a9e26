"""``meta.json``'s ``git_sha`` names sennflow's own checkout, never a repository that merely
contains an installed copy (a wheel in a virtualenv inside a user's project)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from flows.run_folder import git_sha

SOURCE = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not (SOURCE / ".git").exists(), reason="not run from a git checkout")
def test_the_checkouts_commit_is_recorded():
    assert git_sha().removesuffix("-dirty") == git(SOURCE, "rev-parse", "HEAD")


def test_an_installed_copy_inside_another_repository_records_unknown(tmp_path):
    project = tmp_path / "their-project"
    installed = project / ".venv" / "lib" / "site-packages" / "flows"
    installed.mkdir(parents=True)
    shutil.copy(SOURCE / "flows" / "run_folder.py", installed / "run_folder.py")
    git(project, "init", "-q")
    git(
        project,
        "-c",
        "user.name=u",
        "-c",
        "user.email=u@x",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    spec = importlib.util.spec_from_file_location(
        "installed_run_folder", installed / "run_folder.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # before: the user's project commit, with "-dirty" for the untracked venv
    assert module.git_sha() == "unknown"
