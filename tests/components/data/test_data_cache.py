"""Datasets are cached by content fingerprint and published atomically."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import components.data.ingest as ingest_module
from components.data.errors import DataError, StorageError
from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec


def _write_csv(path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(30, 3)), columns=["a", "b", "c"])
    frame["label"] = np.repeat([0, 1, 2], 10)
    frame.to_csv(path, index=False)


def _datasets(cache) -> list[str]:
    return sorted(p.name for p in cache.iterdir())


def test_same_spec_hits_the_cache_without_rewriting(tmp_path):
    spec = DataSpec(source="wine")
    first = ingest(spec, tmp_path)
    stamp = (first.path / "meta.json").stat().st_mtime_ns
    messages: list[str] = []

    second = ingest(spec, tmp_path, progress=messages.append)

    assert not first.cache_hit and second.cache_hit
    assert second.path == first.path and second.meta == first.meta
    assert (first.path / "meta.json").stat().st_mtime_ns == stamp
    assert any("cache hit" in m for m in messages)


def test_content_changing_spec_fields_miss_the_cache(tmp_path):
    base = ingest(DataSpec(source="wine"), tmp_path)
    other_seed = ingest(DataSpec(source="wine", seed=1), tmp_path)
    other_split = ingest(DataSpec(source="wine", val_fraction=0.2), tmp_path)

    assert not other_seed.cache_hit and not other_split.cache_hit
    assert len({base.path, other_seed.path, other_split.path}) == 3
    assert not np.array_equal(
        read_split(base.path, "val")[1], read_split(other_seed.path, "val")[1]
    )


def test_synthetic_only_fields_do_not_split_the_cache_of_other_sources(tmp_path):
    first = ingest(DataSpec(source="wine"), tmp_path)
    assert ingest(DataSpec(source="wine", num_samples=5), tmp_path).path == first.path


def test_changed_file_at_the_same_path_misses_the_cache(tmp_path):
    path = tmp_path / "data.csv"
    _write_csv(path, seed=0)
    spec = DataSpec(source="csv", path=str(path))
    first = ingest(spec, tmp_path / "cache")
    assert ingest(spec, tmp_path / "cache").cache_hit

    _write_csv(path, seed=1)
    changed = ingest(spec, tmp_path / "cache")

    assert not changed.cache_hit and changed.path != first.path
    assert changed.meta["fingerprint"] != first.meta["fingerprint"]


def test_failed_ingest_keeps_the_cached_dataset_and_leaves_no_temp_folder(tmp_path):
    path = tmp_path / "data.csv"
    _write_csv(path)
    cache = tmp_path / "cache"
    good = ingest(DataSpec(source="csv", path=str(path)), cache)
    before = {p: p.read_bytes() for p in good.path.rglob("*") if p.is_file()}

    path.write_text("a,b,c,label\n1,2,3,cat\n")  # same path, now invalid
    with pytest.raises(DataError):
        ingest(DataSpec(source="csv", path=str(path)), cache)

    assert _datasets(cache) == [good.path.name]
    assert {p: p.read_bytes() for p in good.path.rglob("*") if p.is_file()} == before


def test_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail_on_meta(root, meta):
        assert any(root.rglob("*.parquet"))  # parts are already written when it fails
        raise OSError("disk full")

    monkeypatch.setattr(ingest_module, "write_meta", fail_on_meta)
    with pytest.raises(
        StorageError, match=f"{tmp_path}: cannot write the dataset cache.*disk full"
    ):
        ingest(DataSpec(source="synthetic", num_samples=400, partition_rows=100), tmp_path)

    assert _datasets(tmp_path) == []


def test_folders_that_killed_ingests_left_are_deleted_by_the_next_one(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from components import atomic

    cache = tmp_path / "cache"
    # a process that started building a dataset, then died without cleaning up (a SIGKILL)
    folder = f"pathlib.Path({str(cache)!r})"
    build = f"import pathlib, components.atomic as a; print(a.building_dir({folder}))"
    dead = subprocess.run(
        [sys.executable, "-c", build], capture_output=True, text=True, check=True
    ).stdout.strip()
    (Path(dead) / "part-0.parquet").write_bytes(b"half a dataset")
    alive = atomic.building_dir(cache)  # this process's: still building
    elsewhere = cache / f".tmp-otherhost-{os.getpid() + 1}-{'a' * 16}"
    old, recent = cache / f".tmp-{'1' * 32}", cache / f".tmp-{'2' * 32}"  # unnamed, older kinds
    for folder in (elsewhere, old, recent):
        folder.mkdir()
    os.utime(old, (time.time() - 2 * 24 * 3600,) * 2)
    messages: list[str] = []

    result = ingest(DataSpec(source="wine"), cache, progress=messages.append)

    assert _datasets(cache) == sorted(p.name for p in (alive, elsewhere, recent, result.path))
    assert "deleted 2 unfinished dataset folder(s) that stopped ingests left" in messages


def test_incomplete_folder_at_the_final_name_is_replaced(tmp_path):
    spec = DataSpec(source="wine")
    final = ingest(spec, tmp_path / "probe").path.name
    stale = tmp_path / "cache" / final
    (stale / "data").mkdir(parents=True)  # e.g. left by a crashed non-atomic writer

    result = ingest(spec, tmp_path / "cache")

    assert not result.cache_hit and result.path == stale
    assert (stale / "meta.json").is_file()
    assert _datasets(tmp_path / "cache") == [final]


def _delete_a_part(dataset) -> None:
    sorted((dataset / "data" / "split=train").glob("*.parquet"))[-1].unlink()


def _truncate_a_part(dataset) -> None:
    part = sorted((dataset / "data" / "split=val").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:-100])


def _mangle_meta(dataset) -> None:
    meta = dataset / "meta.json"
    meta.write_text(meta.read_text()[:-40])


def _miscount_rows(dataset) -> None:
    meta = json.loads((dataset / "meta.json").read_text())
    meta["row_counts"]["test"] += 1
    (dataset / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_delete_a_part, r"data/split=train/part-000001\.parquet is missing"),
        (_truncate_a_part, r"data/split=val/part-000000\.parquet has \d+ bytes, \d+ were written"),
        (_mangle_meta, r"meta\.json cannot be read as JSON"),
        (_miscount_rows, r"split 'test' has \d+ rows, meta\.json says \d+"),
    ],
)
def test_a_damaged_cache_is_reported_and_ingested_again(tmp_path, damage, problem):
    spec = DataSpec(source="wine", partition_rows=64)
    first = ingest(spec, tmp_path)
    expected = {split: read_split(first.path, split) for split in ("train", "val", "test")}
    damage(first.path)
    messages: list[str] = []

    again = ingest(spec, tmp_path, progress=messages.append)

    assert not again.cache_hit and again.path == first.path
    assert re.search(
        f"cached dataset {re.escape(str(first.path))} is damaged \\({problem}", "\n".join(messages)
    )
    for split, (x, y) in expected.items():
        x2, y2 = read_split(again.path, split)
        assert np.array_equal(x2, x) and np.array_equal(y2, y)
    assert _datasets(tmp_path) == [first.path.name]
    assert ingest(spec, tmp_path).cache_hit
