"""The ``parts`` source: seeded images whose class is decided by the coloured parts they hold."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.errors import DataError
from components.data.ingest import ingest
from components.data.parts import VOCABULARY, generate_parts, parts_task, present_parts
from components.data.reader import load_meta, read_masks, read_split
from components.data.spec import DataSpec

_COLOUR_OF = {"red": (0.9, 0.1, 0.1), "cyan": (0.1, 0.9, 0.9)}


@pytest.fixture(scope="module")
def data():
    return generate_parts(240, 4, seed=3)


@pytest.fixture(scope="module")
def parts_path(tmp_path_factory):
    spec = DataSpec(source="parts", num_samples=200, num_classes=4, seed=5, partition_rows=64)
    return ingest(spec, tmp_path_factory.mktemp("cache")).path


def test_same_seed_same_data_other_seed_other_data(data):
    again = generate_parts(240, 4, seed=3)
    other = generate_parts(240, 4, seed=4)

    np.testing.assert_array_equal(again.x, data.x)
    np.testing.assert_array_equal(again.masks, data.masks)
    np.testing.assert_array_equal(again.y, data.y)
    assert not np.array_equal(other.masks, data.masks)


def test_a_rule_reading_only_the_masks_classifies_every_image(data):
    present = present_parts(data.masks, len(data.task.parts))

    np.testing.assert_array_equal(data.task.classify(present), data.y)
    assert np.bincount(data.y).tolist() == [60] * 4
    # Every core part belongs to two classes, so no single part decides the class.
    core = np.concatenate(data.task.class_parts)
    assert np.bincount(core).tolist() == [2, 2, 2, 2]
    # Distractors occur in every class, in roughly half of the images.
    for k in data.task.distractors:
        assert 0.3 < present[:, k].mean() < 0.7
        assert len(np.unique(data.y[present[:, k]])) == 4


def test_masks_label_exactly_the_pixels_painted_in_the_parts_colour(data):
    for name in ("red_square", "cyan_cross"):
        k = data.task.parts.index(name)
        colour = np.array(_COLOUR_OF[name.split("_")[0]], np.float32)[:, None, None]
        # Parts are their colour times a brightness in [0.9, 1] plus grain of std 0.03.
        close = (np.abs(data.x - colour) < 0.2).all(axis=1)
        labelled = data.masks == k + 1
        assert labelled.any()
        np.testing.assert_array_equal(close, labelled)


def test_parts_do_not_touch_and_keep_their_shape(data):
    square = data.masks == data.task.parts.index("red_square") + 1
    rows, cols = np.nonzero(square[data.y == 0][0])
    # The 8x8 box's square silhouette is the inner 6x6 block.
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (6, 6)
    assert len(rows) == 36
    labels = data.masks.astype(int)
    right = labels[:, :, 1:] * labels[:, :, :-1] * (labels[:, :, 1:] != labels[:, :, :-1])
    down = labels[:, 1:] * labels[:, :-1] * (labels[:, 1:] != labels[:, :-1])
    assert not right.any() and not down.any()


def test_task_definitions_and_limits():
    two = parts_task(2)
    assert two.class_parts == ((0, 1), (1, 2)) and two.distractors == (3, 4)
    assert parts_task(6).parts == VOCABULARY
    with pytest.raises(ValueError, match="at most 6 classes"):
        parts_task(7)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        generate_parts(10, 4, image_shape=(1, 32, 32))
    small = generate_parts(8, 3, image_shape=(3, 16, 24))
    assert small.x.shape == (8, 3, 16, 24) and small.masks.shape == (8, 16, 24)


def test_ingest_writes_masks_aligned_with_the_rows(parts_path):
    meta = load_meta(parts_path)
    assert meta.feature_shape == (3, 32, 32)
    assert meta.raw["parts"] == list(VOCABULARY[:6])
    assert meta.raw["class_parts"][0] == ["red_square", "green_disc"]
    assert meta.class_names[0] == "red_square+green_disc"
    task = parts_task(4)
    for split in ("train", "val", "test"):
        raw, y = read_split(parts_path, split, normalize=False)
        masks = read_masks(parts_path, split)
        assert masks.dtype == np.uint8 and masks.shape == (len(y), 32, 32)
        np.testing.assert_array_equal(task.classify(present_parts(masks, 6)), y)
        red = (np.abs(raw - np.array([0.9, 0.1, 0.1])[:, None, None]) < 0.2).all(axis=1)
        np.testing.assert_array_equal(red, masks == 1)


def test_ingest_is_stratified(parts_path):
    counts = {
        split: np.bincount(read_split(parts_path, split)[1], minlength=4)
        for split in ("train", "val", "test")
    }
    # 50 images per class: round(0.15 * 50) = 8 each to val and test, the rest to train.
    assert counts["train"].tolist() == [34] * 4
    assert counts["val"].tolist() == [8] * 4 and counts["test"].tolist() == [8] * 4


def test_num_samples_is_part_of_the_cache_key(tmp_path):
    small = ingest(DataSpec(source="parts", num_samples=40, num_classes=2), tmp_path)
    large = ingest(DataSpec(source="parts", num_samples=60, num_classes=2), tmp_path)
    assert small.path != large.path and sum(large.meta["row_counts"].values()) == 60


def test_read_masks_of_a_dataset_without_masks_names_the_column(tmp_path):
    path = ingest(DataSpec(source="wine"), tmp_path).path
    with pytest.raises(DataError, match="'mask'"):
        read_masks(path, "train")
