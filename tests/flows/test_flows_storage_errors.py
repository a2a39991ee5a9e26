"""A run root or dataset cache that cannot be written is an input error (exit 2) naming the
path, not a traceback; nothing already there is touched."""

from __future__ import annotations

import pytest

from components.data.ingest import ingest
from components.data.spec import DataSpec
from flows.config import ConfigError
from flows.run_folder import check_run_dir_free, create_run_dir
from sennflow.cli import _input_errors, main


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


@pytest.mark.parametrize("root", ["{file}", "{file}/runs"])
def test_the_run_folder_is_checked_before_any_work(a_file, root):
    root = root.format(file=a_file)
    with pytest.raises(ConfigError, match=f"cannot create {root}/pipeline: {a_file} is not a"):
        check_run_dir_free(root, "pipeline", None)
    (a_file.parent / "runs" / "pipeline" / "night-1").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="night-1 already exists; choose another run.id"):
        check_run_dir_free(a_file.parent / "runs", "pipeline", "night-1")
    check_run_dir_free(a_file.parent / "runs", "pipeline", "night-2")  # free: no error
    check_run_dir_free(a_file.parent / "new" / "runs", "sweep", None)  # made when the run starts


@pytest.mark.prefect
@pytest.mark.parametrize("command", ["run", "sweep", "federated", "continual"])
def test_a_taken_run_id_exits_2_before_the_data_is_read(
    prefect_harness, tmp_path, tiny_run, command, capsys
):
    taken = tmp_path / "runs" / ("pipeline" if command == "run" else command) / "night-1"
    (taken / "kept").mkdir(parents=True)
    assert main([command, *tiny_run("run.id=night-1")]) == 2
    assert f"run folder {taken} already exists" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # nothing ingested
    assert [p.name for p in taken.iterdir()] == ["kept"]
