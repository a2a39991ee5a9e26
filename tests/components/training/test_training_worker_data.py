"""A worker reads its dataset once: later calls take the splits from memory (a reused Tune actor
starts its next trial without reading the files again), yet build the batches each call asks
for, and a folder holding other content (another fingerprint) is read afresh."""

from __future__ import annotations

import shutil

import numpy as np
import torch

from components.data.ingest import ingest
from components.data.reader import load_meta, read_split
from components.data.spec import DataSpec
from components.training.config import TrainConfig
from components.training.worker_data import clear_read_cache, worker_batches


def test_a_second_call_reuses_the_read_splits_with_its_own_batch_size(digits_dataset):
    clear_read_cache()
    first, first_val = worker_batches(digits_dataset, TrainConfig(batch_size=16, seed=0))
    second, second_val = worker_batches(digits_dataset, TrainConfig(batch_size=50, seed=3))
    assert second.x.data_ptr() == first.x.data_ptr()  # the same memory: not read again
    assert second_val.x.data_ptr() == first_val.x.data_ptr()
    x, y = next(iter(second))
    assert len(x) == 50 and len(next(iter(first))[0]) == 16
    # batch 0 of the seed-3 order: the rows a fresh read would give
    order = torch.randperm(len(second.y), generator=torch.Generator().manual_seed(3 * 1000))
    expected_x, expected_y = read_split(digits_dataset, "train")
    assert np.array_equal(x.numpy(), expected_x[order[:50].numpy()])
    assert np.array_equal(y.numpy(), expected_y[order[:50].numpy()])


def test_other_content_in_the_same_folder_is_read_afresh(digits_dataset, tmp_path):
    clear_read_cache()
    folder = tmp_path / "dataset"
    shutil.copytree(digits_dataset, folder)
    before, _ = worker_batches(folder, TrainConfig())
    other = ingest(DataSpec(source="digits", val_fraction=0.3, seed=5), tmp_path / "cache").path
    assert load_meta(other).fingerprint != load_meta(folder).fingerprint
    shutil.rmtree(folder)
    shutil.copytree(other, folder)
    after, _ = worker_batches(folder, TrainConfig())
    assert len(after.y) == load_meta(other).row_counts["train"] != len(before.y)
    assert np.array_equal(after.x.numpy(), read_split(other, "train")[0])
