"""Reading datasets: meta, normalisation, shards and bounded-memory batch streams."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from components.data.errors import DataError
from components.data.ingest import ingest
from components.data.reader import iter_batches, load_meta, read_split
from components.data.spec import DataSpec


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    """A synthetic dataset written as 5 Dask partitions (5 Parquet parts per split)."""
    spec = DataSpec(source="synthetic", num_samples=5_000, num_features=7, num_classes=3,
                    partition_rows=1_000, feature_shape=(7, 1), seed=11)  # fmt: skip
    return ingest(spec, tmp_path_factory.mktemp("cache")).path


def test_normalised_train_split_has_zero_mean_unit_std(digits_dataset):
    x, _ = read_split(digits_dataset, "train")
    raw, _ = read_split(digits_dataset, "train", normalize=False)
    x, raw = x.reshape(len(x), -1), raw.reshape(len(raw), -1)

    varying = raw.std(axis=0) > 0
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0)[varying], 1.0, rtol=1e-4)
    assert (~varying).any()  # digits has always-blank pixels: floored std, stays constant
    np.testing.assert_array_equal(load_meta(digits_dataset).std[~varying], 1.0)


def test_streamed_statistics_of_synthetic_match_the_train_split(synthetic_path):
    meta = load_meta(synthetic_path)
    raw, _ = read_split(synthetic_path, "train", normalize=False)
    raw = raw.reshape(len(raw), -1).astype(np.float64)

    np.testing.assert_allclose(meta.mean, raw.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(meta.std, raw.std(axis=0), rtol=1e-5)


@pytest.mark.parametrize("num_shards", [1, 3, 4])
def test_shards_partition_the_split_in_row_order(synthetic_path, num_shards):
    x, y = read_split(synthetic_path, "val")
    shards = [read_split(synthetic_path, "val", shard_index=k, num_shards=num_shards)
              for k in range(num_shards)]  # fmt: skip

    assert sum(len(s[1]) for s in shards) == len(y)
    for k, (x_k, y_k) in enumerate(shards):
        np.testing.assert_array_equal(x_k, x[k::num_shards])
        np.testing.assert_array_equal(y_k, y[k::num_shards])


def test_iter_batches_streams_the_same_rows_in_full_batches(synthetic_path):
    x, y = read_split(synthetic_path, "train")
    batches = list(iter_batches(synthetic_path, "train", 256))

    sizes = [len(b[1]) for b in batches]
    assert all(s == 256 for s in sizes[:-1]) and 0 < sizes[-1] <= 256
    assert batches[0][0].dtype == torch.float32 and batches[0][1].dtype == torch.int64
    assert batches[0][0].shape == (256, 7, 1)
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(), x)
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), y)


def test_iter_batches_of_a_shard_match_read_split(synthetic_path):
    expected_x, expected_y = read_split(synthetic_path, "train", shard_index=1, num_shards=2,
                                        normalize=False)  # fmt: skip
    batches = list(iter_batches(synthetic_path, "train", 100, shard_index=1, num_shards=2,
                                normalize=False))  # fmt: skip
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(), expected_x)
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), expected_y)


def test_batches_are_independent_writable_tensors(synthetic_path):
    first, second = (b[0] for b, _ in zip(iter_batches(synthetic_path, "test", 10), range(2),
                                          strict=False))  # fmt: skip
    snapshot = second.clone()
    first.zero_()  # must not write through into the next batch or the files
    assert torch.equal(second, snapshot)


def test_empty_split_reads_as_zero_rows(tmp_path):
    path = ingest(DataSpec(source="wine", test_fraction=0.0), tmp_path).path
    x, y = read_split(path, "test")
    assert x.shape == (0, 13) and y.shape == (0,)
    assert list(iter_batches(path, "test", 8)) == []


def test_bad_arguments_raise_at_call_time(synthetic_path):
    with pytest.raises(ValueError, match="split='dev'"):
        read_split(synthetic_path, "dev")
    with pytest.raises(ValueError, match="shard_index=2, num_shards=2"):
        iter_batches(synthetic_path, "train", 4, shard_index=2, num_shards=2)
    with pytest.raises(ValueError, match="batch_size=0"):
        iter_batches(synthetic_path, "train", 0)


def test_load_meta_rejects_missing_or_malformed_folders(tmp_path):
    with pytest.raises(DataError, match="dataset folder does not exist"):
        load_meta(tmp_path / "absent")
    with pytest.raises(DataError, match="meta.json is missing"):
        load_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"feature_shape": [3]}))
    with pytest.raises(DataError, match="lacks the keys"):
        load_meta(tmp_path)


def test_feature_names_that_do_not_name_every_feature_are_ignored(tmp_path):
    path = ingest(DataSpec(source="wine"), tmp_path).path
    meta_file = path / "meta.json"
    raw = json.loads(meta_file.read_text())
    for names in (raw["feature_names"][:-1], "alcohol", None):
        meta_file.write_text(json.dumps({**raw, "feature_names": names}))
        assert load_meta(path).feature_names is None  # a hand-edited list: x[i] names instead


def test_categories_mark_only_the_features_meta_names(tmp_path):
    path = ingest(DataSpec(source="wine"), tmp_path).path
    meta_file = path / "meta.json"
    raw = json.loads(meta_file.read_text())
    assert "categories" not in raw and load_meta(path).categorical == {}  # no word columns
    names = raw["feature_names"]
    names[:2] = ["kind=red", "kind=white"]
    both = {"kind=red": ("kind", "red"), "kind=white": ("kind", "white")}
    for categories, expected in (
        ({"kind": ["red", "white", "rose"]}, both),  # "kind=rose" is no feature: not marked
        ({"kind": "red"}, {}),  # a hand-edited value that is not a list of words
        ([], {}),
    ):
        meta_file.write_text(json.dumps({**raw, "feature_names": names, "categories": categories}))
        assert load_meta(path).categorical == expected
