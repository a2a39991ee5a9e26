"""The report's Data section: rows per class and split, and a word when the classes are
imbalanced."""

from __future__ import annotations

from components.report.page import CLASSES_SHOWN, _data_section


def _meta(train: list[int], names: list[str] | None = None) -> dict:
    names = names or [f"c{k}" for k in range(len(train))]
    counts = {"train": train, "val": [1] * len(train), "test": [2] * len(train)}
    return {"class_names": names, "class_counts": counts, "row_counts": {"train": sum(train)}}


def test_rows_per_class_are_listed_by_name():
    html = _data_section(_meta([40, 35], ["cat", "dog"]))
    assert "<h3>Rows per class</h3>" in html
    assert "<th>class</th><th>train</th><th>val</th><th>test</th>" in html
    assert '<td>cat</td><td class="num">40</td>' in html and "imbalanced" not in html


def test_imbalanced_classes_are_named_with_their_ratio_and_the_way_out():
    html = _data_section(_meta([90, 10, 0]))  # a class without training rows is not the minimum
    assert "the largest has 9.0x the training rows of the smallest" in html
    assert "train.class_weights=balanced" in html


def test_many_classes_list_the_rarest():
    train = list(range(100, 100 - 2 * (CLASSES_SHOWN + 10), -2))  # c0 most, the last rarest
    html = _data_section(_meta(train))
    assert f"(the {CLASSES_SHOWN} rarest in train, of {CLASSES_SHOWN + 10})" in html
    assert f"<td>c{CLASSES_SHOWN + 9}</td>" in html and "<td>c0</td>" not in html


def test_a_dataset_cached_before_class_counts_shows_none():
    assert "Rows per class" not in _data_section({"row_counts": {"train": 3}})
