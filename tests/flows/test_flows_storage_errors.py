"""A run root or dataset cache that cannot be written is an input error (exit 2) naming the
path, not a traceback; nothing already there is touched."""

from __future__ import annotations

import pytest

from components.data.ingest import ingest
from components.data.spec import DataSpec
from flows.config import ConfigError
from flows.run_folder import create_run_dir
from sennflow.cli import _input_errors


@pytest.fixture
def a_file(tmp_path):
    """A regular file where a folder is expected (what a read-only root is to root users)."""
    path = tmp_path / "a-file"
    path.write_text("kept")
    return path


@pytest.mark.parametrize("root", ["{file}", "{file}/runs"])
def test_a_run_root_that_cannot_hold_folders_is_an_input_error(a_file, root):
    root = root.format(file=a_file)
    with pytest.raises(
        ConfigError, match=f"run.root={root}: cannot create {root}/pipeline/"
    ) as err:
        create_run_dir(root, "pipeline", None)
    assert isinstance(err.value, _input_errors())
    assert a_file.read_text() == "kept"


def test_a_cache_that_cannot_be_written_is_an_input_error(a_file):
    with pytest.raises(_input_errors(), match=f"{a_file}/cache: cannot write the dataset cache"):
        ingest(DataSpec(source="wine"), a_file / "cache")
    assert a_file.read_text() == "kept"
