"""train.label_fraction: a seeded, stratified fraction of the train split's labels."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.reader import read_labels, read_split
from components.training.config import TrainConfig
from components.training.label_fraction import labelled_rows
from components.training.worker_data import worker_batches


def test_the_subset_is_stratified_seeded_and_exact():
    y = np.repeat(np.arange(4), [50, 30, 17, 3])
    rows = labelled_rows(y, 0.1, seed=0)
    # round(0.1 * n_c) of every class, at least one
    assert np.bincount(y[rows]).tolist() == [5, 3, 2, 1]
    assert np.array_equal(rows, labelled_rows(y, 0.1, seed=0))
    assert not np.array_equal(rows, labelled_rows(y, 0.1, seed=1))
    assert np.array_equal(labelled_rows(y, 1.0, seed=0), np.arange(len(y)))


def test_workers_train_on_the_labelled_rows_only(digits_dataset):
    labels = read_labels(digits_dataset, "train")
    x_all, _ = read_split(digits_dataset, "train")
    rows = labelled_rows(labels, 0.1, seed=2)
    cfg = TrainConfig(label_fraction=0.1, seed=2, batch_size=32)
    shards = [worker_batches(digits_dataset, cfg, rank, 2)[0] for rank in (0, 1)]
    # the two ranks hold the subset between them, each row once, with its global id
    ids = np.sort(np.concatenate([s.ids.numpy() for s in shards]))
    assert np.array_equal(ids, rows)
    for shard in shards:
        assert np.array_equal(shard.x.numpy(), x_all[shard.ids.numpy()])
        assert np.array_equal(shard.y.numpy(), labels[shard.ids.numpy()])
    # both ranks take the same number of steps
    assert len(shards[0]) == len(shards[1]) == -(-max(len(s.y) for s in shards) // 32)
    val = worker_batches(digits_dataset, cfg)[1]
    assert len(val.y) == len(read_labels(digits_dataset, "val"))  # val keeps every label


def test_image_workers_keep_the_same_subset(parts_image_dataset):
    labels = read_labels(parts_image_dataset, "train")
    cfg = TrainConfig(label_fraction=0.1, seed=0, batch_size=16, decode_workers=0)
    shards = [worker_batches(parts_image_dataset, cfg, rank, 2)[0] for rank in (0, 1)]
    rows = np.sort(np.concatenate([s.ids.numpy() for s in shards]))
    assert np.array_equal(rows, labelled_rows(labels, 0.1, seed=0))
    assert len(shards[0]) == len(shards[1])


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5])
def test_a_fraction_outside_0_1_is_refused(value):
    from flows.config import ConfigError, compose, to_settings

    with pytest.raises(ValueError, match=f"train.label_fraction={value}"):
        TrainConfig(label_fraction=value)
    with pytest.raises(ConfigError, match="label_fraction"):
        to_settings(compose([f"train.label_fraction={value}"]))
