"""Inputs for ``sennflow predict``: new rows and image files read exactly as the run's dataset.

The invariant: a file the dataset's test split came from, read as new input, gives the test
split's rows and labels, bit for bit (the ingest shuffles a split's rows: compared in one
order)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.data.errors import DataError
from components.data.ingest import ingest
from components.data.layout import split_files
from components.data.new_inputs import (
    NO_LABEL,
    image_batches,
    image_inputs,
    image_table_batches,
    input_kind,
    read_table,
)
from components.data.reader import load_meta, read_split
from components.data.spec import DataSpec


def _sorted(x: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """``x`` and ``others`` with the rows of ``x`` in lexicographic order."""
    order = np.lexsort(x.reshape(len(x), -1).T[::-1])
    return (x[order], *(o[order] for o in others))


def _frame(n: int, seed: int, missing: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "count": rng.integers(0, 5, n),
            "label": rng.choice(["cat", "dog"], n),
        }
    )
    if missing:
        frame.loc[[1, 4], "size"] = np.nan
        frame.loc[[2], "colour"] = None
    return frame


@pytest.fixture
def table_dataset(tmp_path):
    """``make(missing=False)``: a Parquet folder with fixed train/val/test files (a word column,
    numbers) ingested; returns the folder and the dataset."""

    def make(missing: bool = False, **spec):
        folder = tmp_path / "table"
        folder.mkdir(exist_ok=True)
        for seed, split in enumerate(("train", "val", "test")):
            _frame(60, seed, missing).to_parquet(folder / f"{split}.parquet", index=False)
        spec = DataSpec(source="parquet", path=str(folder), fill_missing=missing, **spec)
        return folder, ingest(spec, tmp_path / "cache").path

    return make


def test_the_test_file_read_as_new_rows_is_the_test_split(table_dataset):
    folder, dataset = table_dataset()
    rows = read_table(str(folder / "test.parquet"), load_meta(dataset))
    got_x, got_y = _sorted(rows.x, rows.labels)
    x, y = _sorted(*read_split(dataset, "test"))
    np.testing.assert_array_equal(got_x, x)  # one-hot with the training words, standardised
    np.testing.assert_array_equal(got_y, y)  # "cat"/"dog" to the run's class indices
    assert rows.ids[:2] == ["row index 0", "row index 1"]


def test_missing_values_are_filled_as_the_run_filled_them(table_dataset):
    folder, dataset = table_dataset(missing=True)
    meta = load_meta(dataset)
    rows = read_table(str(folder / "test.parquet"), meta)
    expected = _sorted(read_split(dataset, "test")[0])[0]  # filled with the float32 nanmean:
    np.testing.assert_allclose(_sorted(rows.x)[0], expected, atol=1e-6)  # 4e-7 after scaling
    size = meta.feature_names.index("size")
    assert rows.x[1, size] == rows.x[4, size] == 0.0  # the training mean, standardised
    words = [j for j, name in enumerate(meta.feature_names) if name.startswith("colour=")]
    raw = rows.x[2, words] * meta.std[words] + meta.mean[words]
    np.testing.assert_allclose(raw, 0.0, atol=1e-6)  # no word: every 0/1 feature 0


def test_a_csv_of_new_rows_in_another_column_order_without_labels(table_dataset, tmp_path):
    folder, dataset = table_dataset()
    frame = pd.read_parquet(folder / "test.parquet")
    path = tmp_path / "new.csv"
    frame[["count", "label", "colour", "size"]].drop(columns="label").assign(id=7).to_csv(
        path, index=False
    )
    rows = read_table(str(path), load_meta(dataset))
    expected = _sorted(read_split(dataset, "test")[0])[0]
    np.testing.assert_allclose(_sorted(rows.x)[0], expected, rtol=1e-6, atol=1e-6)
    assert (rows.labels == NO_LABEL).all()
    assert rows.ids[0] == "line 2"  # the header is line 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.assign(colour="purple"), "column 'colour', 60 rows"),
        (lambda f: f.drop(columns="count"), r"lacks the columns \['count'\]"),
        (lambda f: f.assign(size=f["size"].where(f.index != 3)), "rows have missing values"),
        (lambda f: f.assign(count=f["count"].astype(str).where(f.index != 5, "?")), "not a number"),
    ],
    ids=["unknown word", "missing column", "missing value", "text for a number"],
)
def test_rows_the_model_cannot_take_are_named(table_dataset, tmp_path, change, expected):
    folder, dataset = table_dataset()
    path = tmp_path / "bad.csv"
    change(pd.read_parquet(folder / "test.parquet")).to_csv(path, index=False)
    with pytest.raises(DataError, match=expected) as err:
        read_table(str(path), load_meta(dataset))
    assert "bad.csv" in str(err.value)


def test_missing_value_errors_name_the_line_and_column(table_dataset, tmp_path):
    folder, dataset = table_dataset()
    path = tmp_path / "bad.csv"
    frame = pd.read_parquet(folder / "test.parquet")
    frame.loc[3, "size"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"1 row \(line 5\).*in \['size'\]"):
        read_table(str(path), load_meta(dataset))


@pytest.mark.parametrize(
    "list_type",
    [pa.list_(pa.float32()), pa.large_list(pa.float64()), pa.list_(pa.float32(), 64)],
    ids=["list", "large_list", "fixed_size_list"],  # the last is how the cache stores them
)
def test_a_list_column_dataset_takes_a_list_column(tmp_path, list_type):
    """digits (8x8 images as rows): new rows are one list column of 64 numbers."""
    dataset = ingest(DataSpec(source="digits"), tmp_path / "cache").path
    meta = load_meta(dataset)
    x, y = read_split(dataset, "test", normalize=False)
    path = tmp_path / "rows.parquet"
    pixels = pa.array(list(x.reshape(len(x), -1)), type=list_type)
    pq.write_table(pa.table({"pixels": pixels, "y": y}), path)
    rows = read_table(str(path), meta)
    np.testing.assert_array_equal(rows.x, read_split(dataset, "test")[0])
    assert rows.x.shape[1:] == meta.feature_shape
    short = tmp_path / "short.parquet"
    pq.write_table(pa.table({"pixels": [r[:10] for r in x.reshape(len(x), -1)]}), short)
    with pytest.raises(DataError, match="rows must hold 64 numbers"):
        read_table(str(short), meta)


def test_an_image_folder_is_read_as_the_test_split(parts_folder, ingest_folder):
    folder = parts_folder(num_samples=40, layout="split_folders", formats=("png", "jpeg"))
    dataset = ingest_folder(folder).path
    meta = load_meta(dataset)
    (folder / "test" / ".DS_Store").write_bytes(b"x")
    (folder / "test" / "notes.txt").write_text("not an image")
    root, files, labels, ignored = image_inputs(str(folder / "test"), meta)
    assert ignored == 2 and len(files) == meta.row_counts["test"]
    x = np.concatenate([b.x for b in image_batches(root, files, labels, meta, batch_size=3)])
    stored = pq.read_table(split_files(dataset, "test"), columns=["path"]).column(0).to_pylist()
    order = [files.index(p.removeprefix("test/")) for p in stored]
    expected_x, expected_y = read_split(dataset, "test")
    np.testing.assert_array_equal(x[order], expected_x)
    np.testing.assert_array_equal(labels[order], expected_y)  # class folder names: labels


def test_a_parquet_image_column_is_read_as_the_image_files(parts_folder, ingest_folder, tmp_path):
    """The Hugging Face layout: a {bytes, path} struct column, labels as class names."""
    folder = parts_folder(num_samples=40, layout="split_folders")
    dataset = ingest_folder(folder).path
    meta = load_meta(dataset)
    root, files, labels, _ = image_inputs(str(folder / "test"), meta)
    images = [{"bytes": (root / f).read_bytes(), "path": f} for f in files] + [None]
    names = [meta.class_names[k] for k in labels] + ["not a class"]
    path = tmp_path / "images.parquet"
    pq.write_table(pa.table({"image": images, "label": names}), path)
    assert input_kind(str(path), meta) == "image_table"
    batches, total = image_table_batches(str(path), meta, batch_size=7)
    batches = list(batches)
    expected = list(image_batches(root, files, labels, meta, batch_size=7))
    assert total == len(files) + 1
    np.testing.assert_array_equal(
        np.concatenate([b.x for b in batches]), np.concatenate([b.x for b in expected])
    )
    assert [i for b in batches for i in b.ids] == files  # the struct's paths name the rows
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), labels)
    null = (f"row index {len(files)}", "no image bytes (null)")
    assert [bad for b in batches for bad in b.bad] == [null]


def test_undecodable_images_are_named_in_their_batch(parts_folder, ingest_folder, tmp_path):
    folder = parts_folder(num_samples=16)
    meta = load_meta(ingest_folder(folder).path)
    loose = tmp_path / "loose"
    loose.mkdir()
    good = next(folder.rglob("*.png"))
    (loose / "a.png").write_bytes(good.read_bytes())
    (loose / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    root, files, labels, _ = image_inputs(str(loose), meta)
    assert (labels == NO_LABEL).all()  # no class folders: predicted, not scored
    (batch,) = list(image_batches(root, files, labels, meta, batch_size=8))
    assert batch.ids == ["a.png"] and batch.x.shape == (1, *meta.feature_shape)
    assert [path for path, _ in batch.bad] == ["b.jpg"]


def test_the_wrong_kind_of_input_is_refused(parts_folder, ingest_folder, table_dataset, tmp_path):
    images = parts_folder(num_samples=16)
    image_meta = load_meta(ingest_folder(images).path)
    folder, dataset = table_dataset()
    with pytest.raises(DataError, match="holds images, but the model takes a CSV or Parquet"):
        input_kind(str(images), load_meta(dataset))
    rows = tmp_path / "rows.csv"
    rows.write_text("size,colour\n1,red\n")
    with pytest.raises(DataError, match="holds a table, but the model takes image files"):
        input_kind(str(rows), image_meta)
    with pytest.raises(DataError, match="does not exist"):
        input_kind(str(tmp_path / "nothing.csv"), image_meta)
    assert input_kind(str(folder), load_meta(dataset)) == "table"  # a folder of Parquet files
    photo = tmp_path / "IMG_0001.HEIC"  # a phone's photo in a format the decoder does not read
    photo.write_bytes(b"\x00\x00\x00\x18ftypheic")
    for model in (load_meta(dataset), image_meta):
        with pytest.raises(DataError, match=r"HEIC: is neither an image file \(.jpg, .*\) nor a"):
            input_kind(str(photo), model)
    part = next(folder.rglob("*.parquet"))
    bare = tmp_path / "part-00000"  # a Parquet part without a suffix, known by its first bytes
    bare.write_bytes(part.read_bytes())
    assert input_kind(str(bare), load_meta(dataset)) == "table"
    csvs = tmp_path / "exports"  # a folder of CSV files: neither images nor Parquet parts
    csvs.mkdir()
    (csvs / "day1.csv").write_text("size,colour\n1,red\n")
    for model in (load_meta(dataset), image_meta):
        with pytest.raises(DataError, match="is a folder with no image or Parquet file, but"):
            input_kind(str(csvs), model)
