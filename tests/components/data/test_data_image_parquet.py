"""``data=parquet`` with an image-bytes column: Hugging Face structs or plain binary."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.data.errors import DataError
from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec

SIZE = 16
NAMES = ["airplane", "bird", "cat"]


@pytest.fixture
def images(image_tools, tmp_path):
    """``(encoded bytes, labels 0..2)`` of 18 small PNG/JPEG files, 6 per class."""
    blobs = []
    for k in range(18):
        path = tmp_path / "src" / f"{k}.{'png' if k % 2 else 'jpg'}"
        blobs.append(image_tools.write_image(path, image_tools.random_pixels(k)).read_bytes())
    return blobs, [k % 3 for k in range(18)]


def _hf_table(blobs, labels, names=NAMES) -> pa.Table:
    struct = pa.array(
        [{"bytes": b, "path": f"img_{k}.png"} for k, b in enumerate(blobs)],
        pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )
    features = {"image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.table(
        {"image": struct, "label": pa.array(labels, pa.int64())}
    ).replace_schema_metadata(metadata)


def _ingest(table: pa.Table, tmp_path, **spec):
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    spec = {"image_size": SIZE, **spec}
    return ingest(DataSpec(source="parquet", path=str(path), **spec), tmp_path / "cache")


def test_hugging_face_struct_column_with_class_names_from_the_metadata(
    images, image_tools, tmp_path
):
    blobs, labels = images

    result = _ingest(_hf_table(blobs, labels), tmp_path)

    meta = result.meta
    assert meta["class_names"] == NAMES and meta["layout"] == "parquet" and meta["kind"] == "image"
    assert meta["row_counts"] == {"train": 12, "val": 3, "test": 3}
    for rows in image_tools.all_rows(result.path).values():
        for row in rows:
            k = int(row["path"].removeprefix("img_").removesuffix(".png"))
            assert row["image"] == blobs[k] and row["y"] == labels[k]
    x, _ = read_split(result.path, "train")
    assert x.shape == (12, 3, SIZE, SIZE)


def test_plain_binary_column_with_class_names_from_the_label_values(images, image_tools, tmp_path):
    blobs, labels = images
    table = pa.table(
        {
            "id": np.arange(18),  # ignored: the only image column is the data
            "png": pa.array(blobs, pa.binary()),
            "label": pa.array([7 if y == 2 else y for y in labels]),
        }
    )

    result = _ingest(table, tmp_path)

    assert result.meta["class_names"] == ["0", "1", "7"]
    rows = [r for split in image_tools.all_rows(result.path).values() for r in split]
    assert sorted(r["path"] for r in rows) == sorted(str(k) for k in range(18))
    for row in rows:
        assert row["image"] == blobs[int(row["path"])] and row["y"] == labels[int(row["path"])]


def test_a_changed_image_size_is_another_dataset(images, tmp_path):
    blobs, labels = images
    first = _ingest(_hf_table(blobs, labels), tmp_path)
    smaller = _ingest(_hf_table(blobs, labels), tmp_path, image_size=8)

    assert not smaller.cache_hit and smaller.path != first.path
    assert smaller.meta["feature_shape"] == [3, 8, 8]


def test_a_corrupt_image_and_a_bad_label_name_their_rows(images, image_tools, tmp_path):
    blobs, labels = images
    blobs[4] = blobs[4][:20]
    labels[9] = 5  # not an index into the three class names

    with pytest.raises(DataError, match=r"2 of 18 rows are not usable images") as error:
        _ingest(_hf_table(blobs, labels), tmp_path)

    assert "img_4.png (" in str(error.value)
    assert "img_9.png (label 5 is not a class index from 0 to 2" in str(error.value)
    assert image_tools.cache_is_clean(tmp_path / "cache")


def test_drop_invalid_drops_bad_rows_and_lists_them(images, tmp_path):
    blobs, labels = images
    blobs[4] = b""
    table = pa.table(
        {"image": pa.array(blobs, pa.binary()), "label": pa.array(labels, pa.float64())}
    ).set_column(1, "label", pa.array([*labels[:9], 0.5, *labels[10:]]))

    meta = _ingest(table, tmp_path, drop_invalid=True).meta

    assert {d["path"]: d["reason"] for d in meta["dropped_files"]} == {
        "4": "empty file (0 bytes)",
        "9": "label 0.5 is not an integer",
    }
    assert sum(meta["row_counts"].values()) == 16
    assert meta["dropped_by_reason"]["unreadable"] == 1
    assert meta["dropped_by_reason"]["invalid_label"] == 1


def test_several_image_columns_need_feature_columns(images, tmp_path):
    blobs, labels = images
    table = pa.table({"a": blobs, "b": blobs, "label": labels})

    with pytest.raises(DataError, match=r"several image columns \['a', 'b'\]"):
        _ingest(table, tmp_path)
    chosen = _ingest(table, tmp_path, feature_columns=["b"])
    assert chosen.meta["kind"] == "image" and sum(chosen.meta["row_counts"].values()) == 18


def test_an_image_column_mixed_with_numeric_features_is_an_error(images, tmp_path):
    blobs, labels = images
    table = pa.table({"png": blobs, "size": np.ones(18), "label": labels})

    with pytest.raises(DataError, match=r"image column 'png' is mixed with other feature"):
        _ingest(table, tmp_path, feature_columns=["png", "size"])


def test_a_column_of_class_names_labels_the_images(images, image_tools, tmp_path):
    blobs, labels = images  # e.g. a dataset exported from pandas with its label names
    names = pa.array([NAMES[y] for y in labels]).dictionary_encode()  # a categorical column
    table = pa.table({"image": pa.array(blobs, pa.binary()), "label": names})

    result = _ingest(table, tmp_path)

    assert result.meta["class_names"] == NAMES  # sorted, as integer labels are
    rows = [r for split in image_tools.all_rows(result.path).values() for r in split]
    assert len(rows) == 18
    assert all(row["y"] == labels[int(row["path"])] for row in rows)


def test_a_hugging_face_folder_of_shards_is_one_dataset(images, image_tools, tmp_path):
    # as the Hub stores a dataset: data/train-0000K-of-0000N.parquet, class names in each
    blobs, labels = images
    table = _hf_table(blobs, labels)
    folder = tmp_path / "hub" / "data"
    folder.mkdir(parents=True)
    for k, start in enumerate(range(0, 18, 6)):
        pq.write_table(table.slice(start, 6), folder / f"train-{k:05d}-of-00003.parquet")
    spec = DataSpec(source="parquet", path=str(tmp_path / "hub"), image_size=SIZE)

    result = ingest(spec, tmp_path / "cache")

    assert result.meta["class_names"] == NAMES
    rows = [row for split in image_tools.all_rows(result.path).values() for row in split]
    assert sorted(row["image"] for row in rows) == sorted(blobs)
    assert ingest(spec, tmp_path / "cache").cache_hit
    pq.write_table(table.slice(0, 5), folder / "train-00000-of-00003.parquet")  # a row less
    changed = ingest(spec, tmp_path / "cache")
    assert not changed.cache_hit and sum(changed.meta["row_counts"].values()) == 17


def test_the_hubs_test_files_are_the_test_split_and_val_is_carved_from_train(
    images, image_tools, tmp_path
):
    blobs, labels = images
    table = _hf_table(blobs, labels)
    folder = tmp_path / "hub" / "data"
    folder.mkdir(parents=True)
    pq.write_table(table.slice(0, 12), folder / "train-00000-of-00001.parquet")
    pq.write_table(table.slice(12, 6), folder / "test-00000-of-00001.parquet")
    spec = DataSpec(source="parquet", path=str(tmp_path / "hub"), image_size=SIZE)

    result = ingest(spec, tmp_path / "cache")

    rows = image_tools.all_rows(result.path)
    test = {row["path"] for row in rows["test"]}
    assert test == {f"img_{k}.png" for k in range(12, 18)}  # exactly the test file's rows
    assert len(rows["train"]) + len(rows["val"]) == 12 and len(rows["val"]) == 3
    assert result.meta["layout"] == "parquet_split_files"
    assert result.meta["fixed_splits"] == ["train", "test"]
