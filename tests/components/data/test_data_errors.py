"""Bad input raises DataError naming the file, the column and how many rows; or is dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.data.errors import DataError
from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec


def _frame(per_class: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], per_class)
    frame = pd.DataFrame(rng.normal(size=(len(y), 3)), columns=["a", "b", "c"])
    frame["label"] = y
    return frame


def _csv(tmp_path, frame: pd.DataFrame, name: str = "bad.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _ingest_csv(path: str, cache, **spec) -> None:
    ingest(DataSpec(source="csv", path=path, **spec), cache)


def _expect(
    error: pytest.ExceptionInfo,
    *,
    file: str,
    column: str | None,
    rows: int | None,
    at: str | None = None,
):
    """The error names ``file``, ``column``, ``rows`` and, as ``at``, the first bad rows."""
    message = str(error.value)
    assert file in message
    assert error.value.file == file and error.value.column == column and error.value.rows == rows
    if column is not None:
        assert f"column {column!r}" in message
    if rows is not None:
        assert f"{rows} row" in message
    if at is not None:
        assert f"{rows} row{'s' if rows != 1 else ''} ({at}): " in message


def test_missing_label_column(tmp_path):
    path = _csv(tmp_path, _frame().drop(columns="label"))
    with pytest.raises(DataError, match="label column not found") as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="label", rows=None)  # a header problem: no row count
    assert str(error.value).endswith("with data.label_column, e.g. data.label_column=c")


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        (["a", "Label"], "data.label_column=Label"),  # another spelling of the name asked for
        (["species", "b"], "data.label_column=species"),  # a name classes usually go by
        (["a", "work class"], "\"data.label_column='work class'\""),  # the last: quoted
        (
            ["5.1", "3.5", "setosa"],
            "its first line is data, not a header: add a first line naming the columns",
        ),  # fmt: skip
    ],
)
def test_a_missing_label_column_suggests_the_likely_one(tmp_path, header, hint):
    path = tmp_path / "table.csv"
    path.write_text(",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n")
    with pytest.raises(DataError, match="label column not found") as error:
        _ingest_csv(str(path), tmp_path / "cache")
    assert str(error.value).endswith(hint)


def test_words_among_numbers_are_named_by_line(tmp_path):
    frame = _frame().astype({"b": object})
    frame.loc[[2, 7], "b"] = ["abc", "n/a?"]
    path = _csv(tmp_path, frame)
    with pytest.raises(
        DataError, match=r"column of numbers holds 2 words such as \['abc'"
    ) as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="b", rows=2, at="lines 4, 9")


def test_numbers_among_words_are_named_by_line(tmp_path):
    frame = _frame().astype({"b": object})
    frame["b"] = ["red", "blue", "green"] * 5
    frame.loc[[3, 11], "b"] = ["7", "0.5"]  # a column of colours with two stray numbers
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError, match=r"column of words \(such as .*\) holds 2 numbers") as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="b", rows=2, at="lines 5, 13")


def test_a_column_of_too_many_words_is_refused_as_no_categories(tmp_path):
    frame = _frame().astype({"b": object})
    frame["b"] = [f"user{i}" for i in range(len(frame))]  # an id column, not a category
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError, match="more than 10 distinct words") as error:
        ingest(DataSpec(source="csv", path=path, max_categories=10), tmp_path / "cache")
    _expect(error, file=path, column="b", rows=None)
    assert "data.drop_columns, or raise data.max_categories" in str(error.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    # left out, the id column is no feature, and the rest of the file ingests
    result = ingest(DataSpec(source="csv", path=path, drop_columns=("b",)), tmp_path / "cache")
    assert result.meta["feature_names"] == ["a", "c"]


@pytest.mark.parametrize(
    "days",
    [
        ["2024-01-03", "2024-02-29"],  # ISO dates: few enough to pass as categories
        ["03/01/2024", "29.02.2024"],
        ["2024-01-03 10:00:00", "2024-01-03T10:00:00.5+01:00"],
        ["10:30", "7:05:59"],
    ],
)
def test_a_column_of_dates_is_refused_not_taken_for_categories(tmp_path, days):
    frame = _frame().astype({"b": object})
    frame["b"] = (days * 8)[: len(frame)]
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError, match=r"holds dates or times \(e.g. \[") as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="b", rows=None)
    assert "leave it out with data.drop_columns" in str(error.value)


def test_words_that_only_look_like_dates_stay_categories(tmp_path):
    frame = _frame().astype({"b": object})
    frame["b"] = ["1.2.3", "2024-Q1", "v10:30b"] * 5  # versions, quarters, codes
    path = _csv(tmp_path, frame)
    result = ingest(DataSpec(source="csv", path=path), tmp_path / "cache")
    assert result.meta["categories"] == {"b": ["1.2.3", "2024-Q1", "v10:30b"]}


def test_a_parquet_date_column_is_refused_by_its_type(tmp_path):
    frame = _frame()
    frame["when"] = pd.date_range("2024-01-01", periods=len(frame), freq="D")
    frame.to_parquet(tmp_path / "dated.parquet", index=False)
    path = str(tmp_path / "dated.parquet")
    with pytest.raises(DataError, match=r"holds dates or times \(type timestamp") as error:
        ingest(DataSpec(source="parquet", path=path), tmp_path / "cache")
    _expect(error, file=path, column="when", rows=None)
    kept = ingest(DataSpec(source="parquet", path=path, drop_columns=["when"]), tmp_path / "c")
    assert kept.meta["feature_names"] == ["a", "b", "c"]


def test_drop_columns_must_name_columns_of_the_file(tmp_path):
    path = _csv(tmp_path, _frame())
    with pytest.raises(
        DataError, match=r"data.drop_columns names \['d'\], which the file"
    ) as error:
        _ingest_csv(path, tmp_path / "cache", drop_columns=["a", "d"])
    _expect(error, file=path, column="d", rows=None)
    with pytest.raises(DataError, match="no feature columns besides the label"):
        _ingest_csv(path, tmp_path / "cache", drop_columns=["a", "b", "c"])
    with pytest.raises(ValueError, match="feature_columns and DataSpec.drop_columns are both"):
        DataSpec(source="csv", path=path, feature_columns=["a"], drop_columns="b")
    # what is left out is part of the dataset: no cache hit for another choice
    for dropped, kept in (("a", ["b", "c"]), ("b", ["a", "c"])):
        spec = DataSpec(source="csv", path=path, drop_columns=dropped)
        assert ingest(spec, tmp_path / "cache").meta["feature_names"] == kept


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features(tmp_path, bad):
    frame = _frame()
    frame.loc[[1, 4, 9], "c"] = bad
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError, match="NaN, inf or missing") as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="c", rows=3, at="lines 3, 6, 11")
    assert str(error.value).endswith("data.drop_invalid=true to drop such rows")
    # a missing value may be filled; inf is no missing value, so only dropping helps
    assert ("set data.fill_missing=true" in str(error.value)) == np.isnan(bad)
    if not np.isnan(bad):
        with pytest.raises(DataError, match="NaN, inf or missing"):
            _ingest_csv(path, tmp_path / "cache", fill_missing=True)


def test_missing_values_are_filled_with_the_training_mean(tmp_path):
    frame = _frame(per_class=20).astype({"b": object})
    frame["b"] = ["red", "blue"] * 30
    frame["a"] = np.arange(60.0)
    frame.loc[[1, 4, 9, 30], "a"] = np.nan
    frame.loc[[2, 50], "b"] = None  # an empty cell: no word
    path = _csv(tmp_path, frame)
    result = ingest(DataSpec(source="csv", path=path, fill_missing=True), tmp_path / "cache")

    assert result.meta["filled_missing"] == {"a": 4, "b": 2}
    assert result.meta["row_counts"] == {"train": 42, "val": 9, "test": 9}  # no row dropped
    names = result.meta["feature_names"]
    assert names == ["a", "b=blue", "b=red", "c"]
    splits = [read_split(result.path, s, normalize=False)[0] for s in ("train", "val", "test")]
    given = np.arange(60, dtype=np.float32)  # column a's values: whole numbers, each once
    filled = [~np.isin(x[:, 0], given) for x in splits]
    assert sum(int(f.sum()) for f in filled) == 4 and filled[0].any()
    train_a = splits[0][:, 0]
    mean = train_a[~filled[0]].astype(np.float64).mean()  # of the known train values only
    for x, f in zip(splits, filled, strict=True):
        np.testing.assert_allclose(x[f, 0], mean, rtol=1e-6)
    assert sum(int((x[:, 1:3].sum(axis=1) == 0).sum()) for x in splits) == 2  # no word
    # standardised with the train statistics, a filled value is exactly the mean: 0
    x_train = read_split(result.path, "train")[0]
    np.testing.assert_allclose(x_train[filled[0], 0], 0.0, atol=1e-5)

    again = ingest(DataSpec(source="csv", path=path, drop_invalid=True), tmp_path / "cache")
    assert not again.cache_hit and again.meta["dropped_rows"] == 6  # filled or not: 2 datasets


def test_a_column_missing_in_all_training_rows_cannot_be_filled(tmp_path):
    frame = _frame()
    frame["a"] = np.nan
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError, match="no value in the training split") as error:
        _ingest_csv(path, tmp_path / "cache", fill_missing=True)
    _expect(error, file=path, column="a", rows=None)


def test_feature_values_overflowing_float32_count_as_non_finite(tmp_path):
    frame = _frame()
    frame.loc[0, "a"] = 1e300
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError, match="NaN, inf or missing") as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="a", rows=1, at="line 2")


@pytest.mark.parametrize("bad_labels", [[1.5, 2.25], ["cat", "dog"], ["cat", 0.5]])
def test_labels_must_be_integers(tmp_path, bad_labels):
    frame = _frame().astype({"label": object})
    frame.loc[[0, 5], "label"] = bad_labels
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError, match="labels must be integers") as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="label", rows=2, at="lines 2, 7")


@pytest.mark.parametrize("file", ["csv", "parquet"])
def test_a_missing_class_index_is_called_missing_not_a_non_integer(tmp_path, file):
    frame = _frame()
    frame["label"] = frame["label"].astype(float)  # 0.0, 1.0: how pandas writes labels with NaN
    frame.loc[[3, 8], "label"] = np.nan
    path = str(tmp_path / f"holes.{file}")
    frame.to_csv(path, index=False) if file == "csv" else frame.to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"labels are missing \(empty or null\) in 2 of 15") as err:
        ingest(DataSpec(source=file, path=path), tmp_path / "cache")
    _expect(err, file=path, column="label", rows=2, at="lines 5, 10" if file == "csv" else None)
    # a fraction among them is no missing label: the message says what labels must be
    frame.loc[0, "label"] = 0.5
    frame.to_csv(tmp_path / "half.csv", index=False)
    with pytest.raises(DataError, match="labels must be integers"):
        _ingest_csv(str(tmp_path / "half.csv"), tmp_path / "cache")


def test_a_missing_class_name_names_its_line_and_drop_invalid_drops_it(tmp_path):
    frame = _frame().astype({"label": object})
    frame["label"] = np.array(["cat", "dog", "eel"])[_frame()["label"].to_numpy()]
    frame.loc[4, "label"] = " "  # blank: no class
    path = _csv(tmp_path, frame)
    missing = r"labels are missing \(empty or null\) in 1 of 15"
    with pytest.raises(DataError, match=missing) as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="label", rows=1, at="line 6")

    result = ingest(DataSpec(source="csv", path=path, drop_invalid=True), tmp_path / "cache")
    assert result.meta["class_names"] == ["cat", "dog", "eel"]
    assert sum(result.meta["row_counts"].values()) == 14


def _ragged_parquet(tmp_path) -> str:
    lists = [[float(i)] * 4 for i in range(15)]
    lists[3], lists[8] = [1.0, 2.0], [1.0] * 7
    table = pa.table({"x": pa.array(lists, pa.list_(pa.float64())),
                      "label": np.repeat([0, 1, 2], 5)})  # fmt: skip
    path = tmp_path / "ragged.parquet"
    pq.write_table(table, path)
    return str(path)


def test_ragged_feature_lists(tmp_path):
    path = _ragged_parquet(tmp_path)
    with pytest.raises(DataError, match=r"ragged lengths \[2, 7\]") as error:
        ingest(DataSpec(source="parquet", path=path), tmp_path / "cache")
    _expect(error, file=path, column="x", rows=2, at="row indices 3, 8")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty \(0 bytes\)") as error:
        _ingest_csv(str(path), tmp_path / "cache")
    _expect(error, file=str(path), column=None, rows=0)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_with_header_but_no_rows(tmp_path, fmt):
    path = tmp_path / f"no_rows.{fmt}"
    empty = _frame().iloc[:0]
    if fmt == "csv":
        empty.to_csv(path, index=False)
    else:
        empty.to_parquet(path)
    with pytest.raises(DataError, match="no rows") as error:
        ingest(DataSpec(source=fmt, path=str(path)), tmp_path / "cache")
    _expect(error, file=str(path), column=None, rows=0)


def test_path_that_does_not_exist(tmp_path):
    path = str(tmp_path / "nowhere.parquet")
    with pytest.raises(DataError, match="does not exist") as error:
        ingest(DataSpec(source="parquet", path=path), tmp_path / "cache")
    _expect(error, file=path, column=None, rows=None)


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [
        ("csv", "nowhere.csv", "file does not exist"),
        ("csv", ".", "is a folder; expected a CSV file"),
        ("parquet", "nowhere", "file does not exist"),
        ("parquet", "parts-*.parquet", "no file matches this pattern"),
        ("image_folder", "nowhere", "folder does not exist"),
        ("image_folder", "bad.csv", "is not a folder"),
    ],
)
def test_check_source_refuses_a_missing_path_as_ingest_does(tmp_path, source, name, message):
    from components.data.ingest import check_source

    _csv(tmp_path, _frame())
    spec = DataSpec(source=source, path=str(tmp_path / name))
    with pytest.raises(DataError, match=message) as checked:
        check_source(spec)
    with pytest.raises(DataError) as ingested:
        ingest(spec, tmp_path / "cache")
    assert str(checked.value) == str(ingested.value)


def test_check_source_accepts_a_path_that_is_there(tmp_path):
    from components.data.ingest import check_source

    check_source(DataSpec(source="csv", path=_csv(tmp_path, _frame())))
    check_source(DataSpec(source="image_folder", path=str(tmp_path)))  # its classes: at ingest
    check_source(DataSpec(source="digits"))  # no path to check


def test_class_too_small_for_the_splits(tmp_path):
    frame = _frame()
    frame = frame[(frame["label"] != 2) | (frame.index < 12)]  # class 2 keeps 2 rows
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError, match=r"class '2' has 2; each class needs at least 3") as error:
        _ingest_csv(path, tmp_path / "cache")
    _expect(error, file=path, column="label", rows=2)
    assert str(error.value).endswith(
        "give those classes more rows or leave them out, or split fewer ways "
        "(data.val_fraction=0 or data.test_fraction=0)"
    )
    # without a test split two rows suffice
    _ingest_csv(path, tmp_path / "cache", test_fraction=0.0)


def test_a_continuous_label_column_is_named_as_no_class_column(tmp_path):
    # a regression target: 100 distinct values in 120 rows
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a", "b"])
    frame["label"] = np.r_[np.arange(100), np.arange(20)]
    path = _csv(tmp_path, frame)
    with pytest.raises(DataError) as error:
        _ingest_csv(path, tmp_path / "cache")
    message = str(error.value)
    assert "and 90 more classes; each class needs at least 3" in message  # 10 named, not 100
    assert message.count("class '") == 10
    assert "holds 100 distinct values in 120 rows, so it looks like a measurement or an id" in (
        message
    )
    assert "split fewer ways" not in message  # the cause is the column, not the splits
    # a few short classes among many rows get no such hint
    assert "looks like" not in _short_class_message(tmp_path)


def _short_class_message(tmp_path) -> str:
    frame = _frame()
    frame = frame[(frame["label"] != 2) | (frame.index < 12)]
    with pytest.raises(DataError) as error:
        _ingest_csv(_csv(tmp_path, frame, "short.csv"), tmp_path / "cache2")
    return str(error.value)


def test_a_file_read_as_the_other_format_names_the_source_its_name_says(tmp_path):
    frame = _frame()
    frame.to_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match="its name says csv: use data=csv$"):
        ingest(DataSpec(source="parquet", path=_csv(tmp_path, frame, "x.csv")), tmp_path / "c")
    with pytest.raises(DataError, match="its name says parquet: use data=parquet$"):
        _ingest_csv(str(tmp_path / "x.parquet"), tmp_path / "c")
    with pytest.raises(DataError) as error:  # a name that says nothing gets no hint
        ingest(DataSpec(source="parquet", path=_csv(tmp_path, frame, "x.data")), tmp_path / "c")
    assert "its name says" not in str(error.value)


def test_drop_invalid_drops_and_counts_each_bad_row_once(tmp_path):
    frame = _frame(per_class=6).astype({"label": object})
    frame.loc[[0, 7], "a"] = np.nan
    frame.loc[1, "b"] = np.inf
    frame.loc[2, "label"] = 1.5
    frame.loc[[7, 8], "label"] = "cat"  # row 7 is also NaN: counted once, as non-finite
    path = _csv(tmp_path, frame)

    result = ingest(DataSpec(source="csv", path=path, drop_invalid=True), tmp_path / "cache")

    assert result.meta["dropped_rows"] == 5
    assert result.meta["dropped_by_reason"] == {
        "ragged_features": 0, "non_finite_features": 3, "invalid_label": 2,
    }  # fmt: skip
    assert sum(result.meta["row_counts"].values()) == 18 - 5
    x, _ = read_split(result.path, "train", normalize=False)
    assert np.isfinite(x).all()


def test_drop_invalid_drops_ragged_lists(tmp_path):
    path = _ragged_parquet(tmp_path)
    result = ingest(DataSpec(source="parquet", path=path, drop_invalid=True), tmp_path / "cache")
    assert result.meta["dropped_by_reason"]["ragged_features"] == 2
    assert result.meta["feature_shape"] == [4]
    assert sum(result.meta["row_counts"].values()) == 13


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"source": "mnist"}, "DataSpec.source='mnist'"),
        ({"source": "csv"}, "DataSpec.path is required"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be < 1"),
        ({"num_classes": 1}, "DataSpec.num_classes=1"),
    ],
)
def test_inconsistent_spec_is_rejected_at_construction(fields, message):
    with pytest.raises(ValueError, match=message):
        DataSpec(**fields)


def test_many_bad_rows_name_the_first_few_by_row_index(tmp_path):
    labels = np.repeat([0, 1, 2], 10).astype(float)
    labels[1::3] = 0.5  # 10 rows: 1, 4, 7, ...
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"x": np.arange(30.0), "label": labels}), path)
    with pytest.raises(DataError, match="labels must be integers") as error:
        ingest(DataSpec(source="parquet", path=str(path)), tmp_path / "cache")
    _expect(
        error, file=str(path), column="label", rows=10, at="first at row indices 1, 4, 7, 10, 13"
    )
    assert error.value.first_rows == (1, 4, 7, 10, 13)
