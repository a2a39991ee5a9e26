"""Image datasets in the training workers: own shards of the Parquet files, decoding in loader
processes, seeded padded epochs, augmentation, and ProtoPNet learning parts from image files."""

import numpy as np
import pytest
import torch

from components.data.reader import load_meta, read_encoded, read_rows, read_split
from components.evaluation.predict import predict_logits
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.worker_data import worker_batches


def test_each_shard_reads_its_own_files_and_together_they_cover_the_split(parts_image_dataset):
    counts = [256] * 5 + [load_meta(parts_image_dataset).row_counts["train"] - 5 * 256]
    shards = [
        read_encoded(parts_image_dataset, "train", shard_index=k, num_shards=2) for k in (0, 1)
    ]
    rows = [shard[2] for shard in shards]
    starts = np.cumsum([0, *counts])
    assert np.array_equal(
        rows[0], np.concatenate([np.arange(starts[i], starts[i + 1]) for i in (0, 2, 4)])
    )
    assert np.array_equal(np.sort(np.concatenate(rows)), np.arange(sum(counts)))
    assert shards[0][3] == shards[1][3] == max(len(r) for r in rows)  # both pad to the larger
    images, y, ids, _ = shards[1]
    assert np.array_equal(y, read_rows(parts_image_dataset, "train", ids)[1])


def test_fewer_files_than_workers_deals_out_rows(parts_image_dataset):
    _, _, rows, largest = read_encoded(parts_image_dataset, "val", shard_index=1, num_shards=3)
    count = load_meta(parts_image_dataset).row_counts["val"]
    assert np.array_equal(rows, np.arange(1, count, 3)) and largest == -(-count // 3)


def test_loader_processes_decode_exactly_what_the_reader_decodes(parts_image_dataset):
    cfg = TrainConfig(batch_size=100, decode_workers=2)
    train, _ = worker_batches(parts_image_dataset, cfg)
    got = list(train.in_order())
    x = torch.cat([b[0] for b in got])
    ids = torch.cat([b[2] for b in got]).numpy()
    expected, y = read_rows(parts_image_dataset, "train", ids[:300])
    assert np.array_equal(ids, np.arange(len(ids)))  # every row once, in the split's order
    assert torch.allclose(x[:300], torch.from_numpy(expected), atol=1e-6)
    assert np.array_equal(torch.cat([b[1] for b in got]).numpy()[:300], y)


def test_epochs_are_seeded_padded_and_augmented(parts_image_dataset):
    cfg = TrainConfig(batch_size=512, decode_workers=0, seed=3)
    train, _ = worker_batches(parts_image_dataset, cfg, 0, 3, augment="light")
    largest = read_encoded(parts_image_dataset, "train", shard_index=0, num_shards=3)[3]

    def epoch(number):
        train.set_epoch(number)
        batches = list(train)
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])

    (x0, y0), (x0_again, y0_again), (_, y1) = epoch(0), epoch(0), epoch(1)
    assert len(y0) == largest and len(train) == -(-largest // 512)  # padded to the largest shard
    assert torch.equal(y0, y0_again) and not torch.equal(y0, y1)  # the order is the epoch's
    assert not torch.allclose(x0, x0_again)  # the crops and flips are drawn anew


@pytest.mark.slow
def test_protopnet_learns_parts_from_image_files(parts_image_dataset):
    # 2,000 32x32 PNG/JPEG files (1,400 train), conv trunk with 2 pools (8x8 grid), 24 epochs,
    # no augmentation (a random crop can cut away the part that decides the class).
    # Measured 0.990 test accuracy.
    cfg = TrainConfig(epochs=24, batch_size=64, lr=3e-3, early_stopping_patience=0)
    train, val = worker_batches(parts_image_dataset, cfg)
    spec = ModelSpec("protopnet", (3, 32, 32), 4, kwargs={"backbone_pools": 2})
    torch.manual_seed(0)
    model = spec.build()
    fit(model, train, val, cfg=cfg, spec=spec, report=lambda *_: None)
    x, y = read_split(parts_image_dataset, "test")
    accuracy = (predict_logits(model.eval(), x).argmax(1).numpy() == y).mean()
    assert accuracy >= 0.90
    assert bool(model.pushed.all())
