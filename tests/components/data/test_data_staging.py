"""Staging a dataset on remote storage (a real S3 API server on loopback) and reading it back."""

from __future__ import annotations

import re
import tempfile

import numpy as np
import pyarrow.fs as pafs
import pytest

from components.data.errors import DataError
from components.data.reader import load_meta, read_split
from components.data.staging import (
    is_uri,
    join,
    local_dataset,
    stage_dataset,
    storage_problem,
)


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path):
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-tmp"))  # a fresh "node"
    (tmp_path / "node-tmp").mkdir()
    return tmp_path / "node-tmp"


def remote_files(uri: str) -> dict[str, int]:
    fs, path = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return {i.path[len(path) + 1 :]: i.size for i in infos if i.type == pafs.FileType.File}


def test_uris_and_local_paths_are_told_apart():
    assert is_uri("s3://bucket/x") and is_uri("gs://b")
    assert not is_uri("/data/x") and not is_uri("runs/x") and not is_uri(None)
    assert not is_uri("file:///data/x")
    assert join("s3://b/store/", "datasets", "d") == "s3://b/store/datasets/d"
    assert storage_problem("s3://bucket/x") is None and storage_problem("/data/x") is None
    assert "unsupported scheme 'ftp'" in storage_problem("ftp://host/x")
    assert "no bucket" in storage_problem("gs://")


def test_staging_to_a_missing_bucket_names_the_setting_and_the_uri(digits_dataset, s3_env):
    where = r"s3://no-such-bucket/x/datasets.*ray.storage_path.*not found"
    with pytest.raises(DataError, match=where):
        stage_dataset(digits_dataset, "s3://no-such-bucket/x")


def test_a_staged_dataset_is_uploaded_once_and_read_back_identically(digits_dataset, s3_env):
    uri = stage_dataset(digits_dataset, "s3://sennflow/staging-test")
    assert uri == f"s3://sennflow/staging-test/datasets/{digits_dataset.name}"
    files = remote_files(uri)
    local = {
        str(p.relative_to(digits_dataset)): p.stat().st_size
        for p in digits_dataset.rglob("*")
        if p.is_file()
    }
    assert {k: v for k, v in files.items() if k != "_STAGED"} == local
    assert "_STAGED" in files  # written last: the upload is complete

    # A second stage of the same (fingerprinted) folder uploads nothing: a file removed from
    # the bucket stays removed.
    fs, path = pafs.FileSystem.from_uri(uri)
    fs.delete_file(join(path, "meta.json"))
    assert stage_dataset(digits_dataset, "s3://sennflow/staging-test") == uri
    assert "meta.json" not in remote_files(uri)
    with fs.open_output_stream(join(path, "meta.json")) as out:
        out.write((digits_dataset / "meta.json").read_bytes())

    copy = local_dataset(uri)
    assert copy.parent == s3_env / "sennflow-datasets" and copy.name == digits_dataset.name
    assert load_meta(copy).fingerprint == load_meta(digits_dataset).fingerprint
    for split in ("train", "val", "test"):
        (x, y), (x0, y0) = read_split(copy, split), read_split(digits_dataset, split)
        assert np.array_equal(x, x0) and np.array_equal(y, y0)
    assert local_dataset(uri) == copy  # downloaded once per node
    assert local_dataset(str(digits_dataset)) == digits_dataset  # local paths pass through


def test_an_incomplete_staged_dataset_is_refused_and_not_cached(digits_dataset, s3_env):
    uri = stage_dataset(digits_dataset, "s3://sennflow/incomplete")
    fs, path = pafs.FileSystem.from_uri(uri)
    node_cache = s3_env / "sennflow-datasets"
    part = "data/split=test/part-000000.parquet"
    for deleted, problem in [
        (part, f"the staged dataset is damaged: {part} is missing"),
        ("_STAGED", "the staged dataset has no _STAGED marker: its upload did not finish"),
    ]:
        fs.delete_file(join(path, deleted))
        with pytest.raises(DataError, match=f"{re.escape(uri)}: {re.escape(problem)}"):
            local_dataset(uri)
        assert not any(node_cache.iterdir())  # neither the copy nor a temporary folder
