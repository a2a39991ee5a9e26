"""``sennflow run data=image_folder`` on a folder with a corrupt image: exit 2, nothing written."""

from __future__ import annotations

import pytest

from components.data.parts_folder import write_parts_folder
from sennflow.cli import main


@pytest.mark.slow
@pytest.mark.prefect
def test_a_corrupt_image_exits_2_naming_it_and_writes_no_dataset(prefect_harness, tmp_path, capsys):
    folder = write_parts_folder(tmp_path / "images", num_samples=24, size=16, formats=("png",))
    corrupt = sorted(folder.rglob("*.png"))[5]
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    cache = tmp_path / "cache"

    code = main(
        [
            "run",
            "data=image_folder",
            f"data.path={folder}",
            "data.image_size=16",
            "train.epochs=1",
            f"run.root={tmp_path / 'runs'}",
            f"run.cache_dir={cache}",
        ]
    )

    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "sennflow: error:" in err
    assert f"1 of 24 files are not usable images: {corrupt.relative_to(folder)} (" in err
    assert not cache.exists() or not any(cache.iterdir())  # no dataset, no staging folder
    assert not (tmp_path / "runs").exists()  # the run folder comes after a successful ingest
