"""Every ingest source produces a dataset folder that honours the on-disk contract."""

from __future__ import annotations

import math
from dataclasses import replace

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from components.data.errors import DataError
from components.data.file_source import csv_batches, load_file
from components.data.ingest import ingest
from components.data.layout import split_files
from components.data.reader import load_meta, read_split
from components.data.spec import DataSpec
from components.data.splits import split_sizes

META_KEYS = {
    "feature_shape", "dtype", "num_features", "num_classes", "class_names", "normalization",
    "row_counts", "fingerprint", "source", "dropped_rows", "dropped_by_reason", "created", "files",
}  # fmt: skip


def _frame(labels=(0, 1, 2), per_class=10, features=4, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.repeat(labels, per_class)
    x = rng.normal(size=(len(y), features)) + y[:, None]
    frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(features)])
    frame["label"] = y
    return frame


def _read_all(path) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_split(path, split, normalize=False) for split in ("train", "val", "test")]
    x = np.concatenate([p[0] for p in parts])
    return x.reshape(len(x), -1), np.concatenate([p[1] for p in parts])


def _same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as multisets of rows (order-free)."""
    return a.shape == b.shape and np.array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])


@pytest.mark.parametrize(
    ("source", "shape", "rows", "names"),
    [
        ("digits", [1, 8, 8], 1797, [str(d) for d in range(10)]),
        ("breast_cancer", [30], 569, ["malignant", "benign"]),
        ("wine", [13], 178, ["class_0", "class_1", "class_2"]),
    ],
)
def test_embedded_sources_keep_every_row_with_natural_shape(tmp_path, source, shape, rows, names):
    result = ingest(DataSpec(source=source), tmp_path)

    meta = result.meta
    assert meta.keys() >= META_KEYS
    assert meta["feature_shape"] == shape and meta["num_features"] == math.prod(shape)
    assert meta["class_names"] == names and meta["num_classes"] == len(names)
    assert sum(meta["row_counts"].values()) == rows
    assert meta["dtype"] == "float32" and meta["dropped_rows"] == 0
    assert result.path.name == f"{source}-{meta['fingerprint'][:16]}"
    x, y = read_split(result.path, "train")
    assert x.shape == (meta["row_counts"]["train"], *shape) and x.dtype == np.float32
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(len(names)))


def test_tables_keep_their_feature_names_and_images_have_none(tmp_path):
    cancer = load_meta(ingest(DataSpec(source="breast_cancer"), tmp_path).path)
    assert cancer.feature_names[:2] == ("mean radius", "mean texture")
    assert len(cancer.feature_names) == 30
    assert load_meta(ingest(DataSpec(source="wine"), tmp_path).path).feature_names[0] == "alcohol"
    assert "feature_names" not in ingest(DataSpec(source="digits"), tmp_path).meta
    # a reshaped row has positions, not named features
    reshaped = ingest(DataSpec(source="breast_cancer", feature_shape=(5, 6)), tmp_path)
    assert "feature_names" not in reshaped.meta
    assert load_meta(reshaped.path).feature_names is None


def test_digits_stores_the_raw_pixels_of_every_image(tmp_path):
    from sklearn.datasets import load_digits

    result = ingest(DataSpec(source="digits"), tmp_path)

    x, _ = _read_all(result.path)
    assert _same_rows(x, load_digits().data.astype(np.float32))


def test_feature_shape_override_reshapes_and_must_match_the_feature_count(tmp_path):
    result = ingest(DataSpec(source="breast_cancer", feature_shape=(5, 6)), tmp_path)
    assert read_split(result.path, "val")[0].shape[1:] == (5, 6)

    with pytest.raises(DataError, match=r"feature_shape \[4, 8\] holds 32 values .* 30 features"):
        ingest(DataSpec(source="breast_cancer", feature_shape=(4, 8)), tmp_path)


def test_synthetic_is_seeded_partitioned_and_balanced(tmp_path):
    spec = DataSpec(source="synthetic", num_samples=2_000, num_features=6, num_classes=4,
                    partition_rows=500, seed=3)  # fmt: skip
    first = ingest(spec, tmp_path / "a")
    again = ingest(spec, tmp_path / "b")
    other_seed = ingest(DataSpec(**{**spec.to_dict(), "seed": 4}), tmp_path / "c")

    assert len(split_files(first.path, "train")) == 4  # one part per Dask partition
    # 4 partitions x 4 classes, 125 rows each, split within the partition
    per_cell = split_sizes(125, spec.val_fraction, spec.test_fraction)
    assert list(first.meta["row_counts"].values()) == [16 * n for n in per_cell]
    x, y = _read_all(first.path)
    assert x.shape == (2000, 6) and np.array_equal(np.bincount(y), [500] * 4)
    assert np.array_equal(x, _read_all(again.path)[0])
    assert not np.array_equal(x, _read_all(other_seed.path)[0])


def test_synthetic_classes_are_separable_by_their_means(tmp_path):
    spec = DataSpec(source="synthetic", num_samples=4_000, num_features=16, num_classes=5,
                    class_sep=4.0, partition_rows=1_000)  # fmt: skip
    path = ingest(spec, tmp_path).path
    x_train, y_train = read_split(path, "train")
    x_test, y_test = read_split(path, "test")

    centroids = np.stack([x_train[y_train == k].mean(axis=0) for k in range(5)])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    accuracy = (distances.argmin(axis=1) == y_test).mean()
    assert accuracy > 0.95  # means ~4 apart vs unit noise: nearest-centroid error is ~2%


def test_synthetic_rejects_partitions_too_small_for_every_split(tmp_path):
    spec = DataSpec(source="synthetic", num_samples=100, num_classes=10, partition_rows=20)
    with pytest.raises(ValueError, match="partitions of 20 rows"):
        ingest(spec, tmp_path)


def test_csv_with_scalar_columns_maps_labels_to_class_indices(tmp_path):
    frame = _frame(labels=(3, 7, 9))
    frame.to_csv(tmp_path / "data.csv", index=False)

    result = ingest(DataSpec(source="csv", path=str(tmp_path / "data.csv")), tmp_path / "cache")

    assert result.meta["class_names"] == ["3", "7", "9"]
    assert result.meta["feature_shape"] == [4]
    x, y = _read_all(result.path)
    assert _same_rows(
        np.column_stack([x, y]),
        np.column_stack([frame.filter(like="f").to_numpy(np.float32),
                         np.searchsorted([3, 7, 9], frame["label"])]),
    )  # fmt: skip


def test_a_csv_column_of_class_names_becomes_the_class_names(tmp_path):
    frame = _frame(labels=(0, 1, 2))
    names = np.array([" setosa", "versicolor", "virginica "])  # stray spaces are trimmed
    numbered = frame["label"].to_numpy()
    frame["label"] = names[numbered]
    frame.to_csv(tmp_path / "iris.csv", index=False)

    result = ingest(DataSpec(source="csv", path=str(tmp_path / "iris.csv")), tmp_path / "cache")

    assert result.meta["class_names"] == ["setosa", "versicolor", "virginica"]
    x, y = _read_all(result.path)
    features = frame.filter(like="f").to_numpy(np.float32)
    assert _same_rows(np.column_stack([x, y]), np.column_stack([features, numbered]))


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("semicolons.csv", {"sep": ";"}),  # a spreadsheet's export in many locales
        ("tabs.tsv", {"sep": "\t"}),
        ("pipes.csv", {"sep": "|"}),
        ("packed.csv.gz", {"compression": "gzip"}),
        ("packed.csv.bz2", {"compression": "bz2"}),
        ("packed.zip", {"compression": {"method": "zip", "archive_name": "data.csv"}}),
        ("latin.csv", {"encoding": "latin-1"}),
    ],
)
def test_csv_delimiter_compression_and_encoding_are_read_as_the_file_has_them(
    tmp_path, name, write
):
    frame = _frame(labels=(0, 1))
    frame["label"] = np.where(frame["label"] == 0, "café", "thé")  # non-ASCII class names
    path = tmp_path / name
    frame.to_csv(path, index=False, **write)
    encoding = write.get("encoding", "utf-8")

    result = ingest(DataSpec(source="csv", path=str(path), encoding=encoding), tmp_path / "c")

    assert result.meta["class_names"] == ["café", "thé"]
    x, y = _read_all(result.path)
    numbered = (frame["label"] == "thé").to_numpy().astype(int)
    features = frame.filter(like="f").to_numpy(np.float32)
    assert _same_rows(np.column_stack([x, y]), np.column_stack([features, numbered]))


def test_a_csv_not_in_its_encoding_names_the_byte_and_the_setting(tmp_path):
    path = tmp_path / "latin.csv"
    _frame(labels=(0, 1)).assign(label=lambda f: f["label"].map({0: "café", 1: "thé"})).to_csv(
        path, index=False, encoding="latin-1"
    )
    with pytest.raises(DataError, match=r"is not utf-8 text .*set data\.encoding"):
        ingest(DataSpec(source="csv", path=str(path)), tmp_path / "cache")
    with pytest.raises(ValueError, match="DataSpec.encoding='klingon'"):
        DataSpec(source="csv", path=str(path), encoding="klingon")


def test_a_semicolon_separated_file_s_decimal_commas_are_numbers(tmp_path):
    frame = _frame(labels=(0, 1)).assign(colour=lambda f: np.where(f["f0"] > 0, "red", "blue"))
    frame.loc[0, "colour"] = "1,5 red"  # a word with a comma in it stays a word
    path = tmp_path / "excel.csv"  # what a spreadsheet in a decimal-comma locale saves
    frame.to_csv(path, index=False, sep=";", decimal=",")
    assert "," in path.read_text().splitlines()[1]

    result = ingest(DataSpec(source="csv", path=str(path)), tmp_path / "cache")

    x, y = _read_all(result.path)
    words = [f"colour={w}" for w in ("1,5 red", "blue", "red")]
    assert result.meta["feature_names"] == ["f0", "f1", "f2", "f3", *words]
    expected = frame.filter(like="f").to_numpy(np.float32)
    assert _same_rows(np.column_stack([x[:, :4], y]), np.column_stack([expected, frame["label"]]))


def test_decimal_commas_in_a_comma_separated_file_are_named_as_the_likely_cause(tmp_path):
    path = tmp_path / "quoted.csv"  # "1,5" in quotes: a decimal comma, or a thousands separator
    _frame(labels=(0, 1)).to_csv(path, index=False, decimal=",")
    with pytest.raises(DataError, match=r"not numbers; a decimal comma\? .* or with ';' between"):
        ingest(DataSpec(source="csv", path=str(path)), tmp_path / "cache")


def test_a_categorical_parquet_label_column_gives_its_categories(tmp_path):
    frame = _frame(labels=(0, 1))
    numbered = frame["label"].to_numpy()
    frame["label"] = pd.Categorical(np.where(numbered == 0, "dog", "cat"))
    frame.to_parquet(tmp_path / "pets.parquet")

    spec = DataSpec(source="parquet", path=str(tmp_path / "pets.parquet"))
    result = ingest(spec, tmp_path / "cache")

    assert result.meta["class_names"] == ["cat", "dog"]
    x, y = _read_all(result.path)
    features = frame.filter(like="f").to_numpy(np.float32)
    assert _same_rows(np.column_stack([x, y]), np.column_stack([features, 1 - numbered]))


def test_csv_feature_columns_select_a_subset(tmp_path):
    _frame().to_csv(tmp_path / "data.csv", index=False)
    spec = DataSpec(source="csv", path=str(tmp_path / "data.csv"), feature_columns=["f2", "f0"])

    x, _ = _read_all(ingest(spec, tmp_path / "cache").path)

    frame = _frame()
    assert _same_rows(x, frame[["f2", "f0"]].to_numpy(np.float32))


def test_a_csv_names_its_features_by_column_in_the_chosen_order(tmp_path):
    frame = _frame().rename(columns={"f1": "blood pressure"})
    frame.to_csv(tmp_path / "data.csv", index=False)
    every = ingest(DataSpec(source="csv", path=str(tmp_path / "data.csv")), tmp_path / "cache")
    chosen = ingest(
        DataSpec(source="csv", path=str(tmp_path / "data.csv"), feature_columns=["f3", "f0"]),
        tmp_path / "cache",
    )

    assert every.meta["feature_names"] == ["f0", "blood pressure", "f2", "f3"]
    assert chosen.meta["feature_names"] == ["f3", "f0"]
    assert load_meta(chosen.path).feature_names == ("f3", "f0")


@pytest.mark.parametrize("list_type", [pa.list_(pa.float64(), 6), pa.list_(pa.float32())])
def test_parquet_list_column_with_custom_label_and_shape(tmp_path, list_type):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6))
    table = pa.table({
        "pixels": pa.array(list(x), type=list_type),
        "target": pa.array(np.repeat([0, 1, 2], 10)),
    })  # fmt: skip
    pq.write_table(table, tmp_path / "data.parquet")
    spec = DataSpec(source="parquet", path=str(tmp_path / "data.parquet"),
                    label_column="target", feature_shape=(2, 3))  # fmt: skip

    result = ingest(spec, tmp_path / "cache")

    assert result.meta["feature_shape"] == [2, 3]
    assert "feature_names" not in result.meta  # a (2, 3) row has positions
    x_read, _ = _read_all(result.path)
    assert _same_rows(x_read, x.astype(np.float32))
    flat = ingest(replace(spec, feature_shape=None), tmp_path / "cache")
    assert flat.meta["feature_names"] == [f"pixels[{i}]" for i in range(6)]


def test_fsspec_url_source(tmp_path):
    url = "memory://sennflow-test/data.csv"
    with fsspec.open(url, "w") as handle:
        _frame().to_csv(handle, index=False)

    result = ingest(DataSpec(source="csv", path=url), tmp_path)

    assert sum(result.meta["row_counts"].values()) == 30
    assert load_meta(result.path).class_names == ("0", "1", "2")


def _csv_file(path, rows: list[str]) -> DataSpec:
    path.write_text("f0,f1,label\n" + "".join(f"{row}\n" for row in rows))
    return DataSpec(source="csv", path=str(path))


def test_a_folder_or_glob_of_parquet_parts_is_read_as_one_table(tmp_path):
    # as Spark and Dask write a dataset: part files, a _SUCCESS marker, hidden .crc files
    frame = _frame(labels=(0, 1, 2), per_class=12)
    folder = tmp_path / "spark"
    folder.mkdir()
    shuffled = frame.sample(frac=1, random_state=0)
    for k, part in enumerate((shuffled[:12], shuffled[12:24], shuffled[24:])):
        part.to_parquet(folder / f"part-{k:05d}.parquet", index=False)
        (folder / f".part-{k:05d}.parquet.crc").write_bytes(b"crc")
    (folder / "_SUCCESS").write_bytes(b"")
    expected = np.column_stack([frame.filter(like="f").to_numpy(np.float32), frame["label"]])

    for path in (folder, folder / "part-*.parquet"):
        result = ingest(DataSpec(source="parquet", path=str(path)), tmp_path / "cache")
        x, y = _read_all(result.path)
        assert _same_rows(np.column_stack([x, y]), expected)

    moved = tmp_path / "moved"
    folder.rename(moved)  # the same bytes under the same names: the same dataset
    assert ingest(DataSpec(source="parquet", path=str(moved)), tmp_path / "cache").cache_hit


def test_parquet_parts_that_disagree_or_a_folder_without_parts_name_the_problem(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    with pytest.raises(DataError, match="the folder holds no .parquet file"):
        ingest(DataSpec(source="parquet", path=str(folder)), tmp_path / "cache")
    with pytest.raises(DataError, match="no file matches this pattern"):
        ingest(DataSpec(source="parquet", path=str(folder / "*.parquet")), tmp_path / "cache")
    _frame().to_parquet(folder / "a.parquet", index=False)
    _frame().rename(columns={"f0": "g0"}).to_parquet(folder / "b.parquet", index=False)
    with pytest.raises(DataError, match=r"b\.parquet: has columns \['g0'"):
        ingest(DataSpec(source="parquet", path=str(folder)), tmp_path / "cache")


def test_parquet_files_named_for_their_split_fix_it(tmp_path):
    # train/ and test/ folders of part files: the test rows stay the test split
    train, test = _frame(labels=(0, 1), per_class=10), _frame(labels=(0, 1), per_class=4, seed=1)
    for split, frame in (("train", train), ("test", test)):
        (tmp_path / "ds" / split).mkdir(parents=True)
        frame.to_parquet(tmp_path / "ds" / split / "part-0.parquet", index=False)

    result = ingest(DataSpec(source="parquet", path=str(tmp_path / "ds")), tmp_path / "cache")

    assert result.meta["row_counts"] == {"train": 16, "val": 4, "test": 8}  # val: 15% of train
    assert result.meta["layout"] == "parquet_split_files"
    assert result.meta["fixed_splits"] == ["train", "test"]
    x, _ = read_split(result.path, "test", normalize=False)
    assert _same_rows(x.reshape(8, -1), test.filter(like="f").to_numpy(np.float32))


def test_split_names_on_some_files_only_or_without_train_are_refused(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    _frame().to_parquet(folder / "test-00000.parquet", index=False)
    _frame().to_parquet(folder / "validation-00000.parquet", index=False)
    with pytest.raises(DataError, match=r"name the splits \['test', 'val'\] but none is train"):
        ingest(DataSpec(source="parquet", path=str(folder)), tmp_path / "cache")
    _frame().to_parquet(folder / "extra-00000.parquet", index=False)
    with pytest.raises(DataError, match=r"1 of its 3 Parquet files name no split \(extra-00000"):
        ingest(DataSpec(source="parquet", path=str(folder)), tmp_path / "cache")


def test_csv_streams_in_blocks_whose_values_change_type(tmp_path):
    # Integers for the first blocks, then floats and whole-number floats as labels: a type
    # inferred from the first block would reject the later ones.
    rows = [f"{i % 7},{i % 5},{i % 3}" for i in range(1500)]
    rows += [f"{i / 4},{-i / 8},{i % 3}.0" for i in range(1500, 2000)]
    spec = _csv_file(tmp_path / "data.csv", rows)

    blocks = sum(1 for _ in csv_batches(spec.path, block_bytes=2 << 10))
    data = load_file(spec, csv_block_bytes=2 << 10)

    assert blocks > 5
    expected = pd.read_csv(spec.path)
    assert np.array_equal(data.x, expected[["f0", "f1"]].to_numpy(np.float32))
    assert np.array_equal(data.y, expected["label"].to_numpy())
    assert data.class_names == ("0", "1", "2")


def test_csv_errors_name_lines_in_later_blocks(tmp_path):
    rows = [f"{i % 7},{i % 5},{i % 3}" for i in range(2000)]
    rows[1900], rows[1950] = "1,abc,0", "2,n/a?,1"
    spec = _csv_file(tmp_path / "bad.csv", rows)
    # Words among numbers are an error even when dropping bad rows.
    spec = DataSpec(source="csv", path=spec.path, drop_invalid=True)
    where = r"'f1', 2 rows \(lines 1902, 1952\): .*\['abc', 'n/a\?'\]"
    with pytest.raises(DataError, match=where):
        load_file(spec, csv_block_bytes=2 << 10)


def test_a_csv_column_of_words_becomes_one_feature_per_word_across_blocks(tmp_path):
    # The words change from block to block, and the column is empty in the first rows: the
    # categories are the whole column's, sorted, and each row's 1 sits under its own word.
    colours = ["red", "green", "blue"]
    rows = [f"{i % 7},{colours[(i // 700) % 3] if i >= 40 else ''},{i % 3}" for i in range(2000)]
    spec = replace(_csv_file(tmp_path / "data.csv", rows), drop_invalid=True)

    data = load_file(spec, csv_block_bytes=2 << 10)

    assert data.feature_names == ("f0", "f1=blue", "f1=green", "f1=red")
    assert data.categories == {"f1": ("blue", "green", "red")}
    assert data.dropped_by_reason["non_finite_features"] == 40  # no word: a missing value
    expected = pd.read_csv(spec.path).iloc[40:]
    assert np.array_equal(data.x[:, 0], expected["f0"].to_numpy(np.float32))
    words = np.array(["blue", "green", "red"])[data.x[:, 1:].argmax(axis=1)]
    assert np.array_equal(words, expected["f1"].to_numpy()) and (data.x[:, 1:].sum(1) == 1).all()
    with pytest.raises(DataError, match="features are NaN, inf or missing") as error:
        load_file(replace(spec, drop_invalid=False), csv_block_bytes=2 << 10)
    assert error.value.column == "f1" and error.value.rows == 40


def test_a_parquet_categorical_feature_is_encoded_like_words(tmp_path):
    frame = _frame(labels=(0, 1), per_class=6)
    frame["size"] = pd.Categorical(["small", "large", " medium"] * 4)
    frame.to_parquet(tmp_path / "data.parquet", index=False)

    result = ingest(DataSpec(source="parquet", path=str(tmp_path / "data.parquet")), tmp_path)

    names = [f"f{j}" for j in range(4)] + ["size=large", "size=medium", "size=small"]
    assert result.meta["feature_names"] == names and result.meta["feature_shape"] == [7]
    assert result.meta["categories"] == {"size": ["large", "medium", "small"]}
    assert load_meta(result.path).categorical == {
        f"size={word}": ("size", word) for word in ("large", "medium", "small")
    }
    x, _ = _read_all(result.path)
    assert sorted(x[:, 4:].sum(axis=0).tolist()) == [4.0, 4.0, 4.0]


def _index_left_out(result, frame: pd.DataFrame, index: list[str]) -> None:
    """The dataset holds exactly ``frame``'s feature columns; meta names the ``index``."""
    assert result.meta["feature_names"] == [f"f{j}" for j in range(4)]
    assert result.meta["index_columns"] == index
    x, _ = _read_all(result.path)
    assert _same_rows(x, frame.filter(like="f").to_numpy(np.float32))


def test_a_row_index_pandas_saved_is_no_feature(tmp_path):
    # sorted by class, a saved row index would predict the label: it must not be a feature
    frame = _frame(labels=(0, 1, 2), per_class=10)
    frame.to_csv(tmp_path / "indexed.csv")  # the index under an empty header
    pd.read_csv(tmp_path / "indexed.csv").to_csv(tmp_path / "twice.csv", index=False)
    frame.sample(frac=1, random_state=0).to_parquet(tmp_path / "shuffled.parquet")  # __index_..
    frame.rename_axis("id").to_parquet(tmp_path / "named.parquet")  # a RangeIndex is metadata
    frame.assign(row=frame.index**2).set_index("row").to_parquet(tmp_path / "row.parquet")

    def ingested(name: str, **spec):
        path = str(tmp_path / name)
        return ingest(DataSpec(source=name.split(".")[1], path=path, **spec), tmp_path / "c")

    _index_left_out(ingested("indexed.csv"), frame, [""])
    _index_left_out(ingested("twice.csv"), frame, ["Unnamed: 0"])
    _index_left_out(ingested("shuffled.parquet"), frame, ["__index_level_0__"])
    _index_left_out(ingested("row.parquet"), frame, ["row"])
    assert "index_columns" not in ingested("named.parquet").meta  # no index column stored
    chosen = ingested("row.parquet", feature_columns=["row", "f0"])  # named: a feature
    assert chosen.meta["feature_names"] == ["row", "f0"] and "index_columns" not in chosen.meta


def test_csv_is_read_a_block_at_a_time(tmp_path):
    rng = np.random.default_rng(0)
    table = pa.table({**{f"f{j}": rng.normal(size=50_000) for j in range(4)},
                      "label": rng.integers(0, 3, 50_000)})  # fmt: skip
    path = tmp_path / "big.csv"
    pa_csv.write_csv(table, path)
    size = path.stat().st_size  # about 4 MB

    batches = csv_batches(str(path), block_bytes=64 << 10)
    before = pa.total_allocated_bytes()
    first = next(batches)
    held = pa.total_allocated_bytes() - before
    batches.close()

    # Reading the whole file as text holds more than its size in Arrow memory.
    assert held < size / 4 and first.num_rows < 5_000, (held, size, first.num_rows)
