"""``sennflow federated federated.embedding=<folder>``: a folder that is not an SSL checkpoint
exits 2 naming the key, before any run folder is written."""

from __future__ import annotations

import pytest

from sennflow.cli import main

pytestmark = [pytest.mark.prefect]


def test_a_missing_embedding_checkpoint_exits_2_naming_the_key(prefect_harness, tmp_path, capsys):
    folder = tmp_path / "not-a-checkpoint"
    folder.mkdir()
    args = [f"run.root={tmp_path / 'runs'}", f"run.cache_dir={tmp_path / 'cache'}"]
    assert main(["federated", *args, f"federated.embedding={folder}"]) == 2
    err = capsys.readouterr().err
    assert f"federated.embedding='{folder}'" in err and "incomplete" in err
    assert not (tmp_path / "runs").exists()  # nothing written
