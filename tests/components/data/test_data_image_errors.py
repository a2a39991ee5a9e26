"""Bad image folders raise DataError naming the files and leave nothing behind; or are dropped."""

from __future__ import annotations

import re

import numpy as np
import pytest

from components.data.errors import DataError
from components.data.reader import read_split


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


def _text(path):
    note = path.with_name("notes.txt")
    note.write_text("shot on a cloudy day")
    return note


def _tiny(path, image_tools):
    return image_tools.write_image(path, image_tools.random_pixels(0, height=12, width=30))


def _float_tiff(path):
    from PIL import Image

    tiff = path.with_suffix(".tif")
    Image.fromarray(np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)).save(tiff)
    path.unlink()
    return tiff


BAD_CASES = {
    "truncated": (_truncate, "Image is incomplete or truncated"),
    "zero bytes": (_empty, "empty file (0 bytes)"),
    "not an image": (_text, "not an image file"),
    "too small": (_tiny, "30x12 pixels, smaller than image_size=16"),
    # converting 32-bit values to 8 would clip them: refused, not spoilt
    "float pixels": (_float_tiff, "32-bit floating-point pixels (mode F); save it with 8- or"),
}


def _spoil(folder, case, image_tools, index=3):
    victim = sorted(folder.rglob("*.jpg"))[index]
    spoil, message = BAD_CASES[case]
    bad = spoil(victim, image_tools) if spoil is _tiny else spoil(victim)
    return bad.relative_to(folder).as_posix(), message


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_a_bad_file_is_a_data_error_naming_it_and_nothing_is_written(
    case, parts_folder, ingest_folder, image_tools, tmp_path
):
    folder = parts_folder(num_samples=24, formats=("jpeg",))
    bad, message = _spoil(folder, case, image_tools)
    total = 25 if case == "not an image" else 24

    with pytest.raises(DataError) as error:
        ingest_folder(folder)

    text = str(error.value)
    assert f"1 of {total} files are not usable images: {bad} (" in text
    assert message in text and "drop_invalid=true" in text
    if case == "too small":  # the size that keeps it: its shorter side
        assert "1 of them are smaller than data.image_size=16: data.image_size=12 keeps" in text
    else:
        assert "data.image_size=" not in text
    assert error.value.file == str(folder)
    assert image_tools.cache_is_clean(tmp_path / "cache")


def test_the_message_lists_ten_bad_files_and_the_total(
    parts_folder, ingest_folder, image_tools, tmp_path
):
    folder = parts_folder(num_samples=24, formats=("png",))
    bad = sorted(folder.rglob("*.png"))[:12]
    for path in bad:
        _empty(path)

    with pytest.raises(DataError, match=r"12 of 24 files are not usable images") as error:
        ingest_folder(folder)

    shown = [p.relative_to(folder).as_posix() for p in bad if p.relative_to(folder).as_posix()
             in str(error.value)]  # fmt: skip
    assert len(shown) == 10 and "; and 2 more;" in str(error.value)
    assert image_tools.cache_is_clean(tmp_path / "cache")


def test_drop_invalid_drops_bad_files_and_lists_them(parts_folder, ingest_folder, image_tools):
    folder = parts_folder(num_samples=32, formats=("jpeg",))
    # One file of each of three classes; 2 of the 8 images per class go to val and to test.
    spoiled = dict(
        _spoil(folder, case, image_tools, index)
        for index, case in ((0, "truncated"), (8, "too small"))
    )
    note, _ = _spoil(folder, "not an image", image_tools, 16)

    result = ingest_folder(folder, drop_invalid=True, val_fraction=0.25, test_fraction=0.25)

    meta = result.meta
    dropped = {d["path"]: d["reason"] for d in meta["dropped_files"]}
    assert set(dropped) == {*spoiled, note}
    for path, message in spoiled.items():
        assert message in dropped[path]
    assert meta["dropped_rows"] == 3
    assert meta["dropped_by_reason"] == {
        "not_an_image": 1, "unreadable": 1, "too_small": 1, "invalid_label": 0,
    }  # fmt: skip
    assert sum(meta["row_counts"].values()) == 30
    stored = {r["path"] for rows in image_tools.all_rows(result.path).values() for r in rows}
    assert not stored & set(dropped)
    assert read_split(result.path, "train")[0].shape == (meta["row_counts"]["train"], 3, 16, 16)


@pytest.mark.parametrize("drop_invalid", [False, True])
def test_an_empty_class_folder_is_an_error_even_with_drop_invalid(
    parts_folder, ingest_folder, image_tools, tmp_path, drop_invalid
):
    folder = parts_folder(num_samples=24)
    (folder / "unicorn").mkdir()
    (folder / "unicorn" / "notes.txt").write_text("no images yet")

    with pytest.raises(DataError, match=r"1 class folder\(s\) hold no image file .*unicorn/ "):
        ingest_folder(folder, drop_invalid=drop_invalid)
    assert image_tools.cache_is_clean(tmp_path / "cache")


@pytest.mark.parametrize("split", ["", "train/"])
def test_a_class_folder_of_photos_in_a_format_not_read_says_which_they_are(
    ingest_folder, image_tools, tmp_path, split
):
    folder = tmp_path / "photos"
    for name in ("cat", "dog"):
        (folder / split / name).mkdir(parents=True)
    image_tools.write_image(folder / split / "cat" / "a.png", image_tools.random_pixels(0))
    for k in range(3):  # a phone's photos
        (folder / split / "dog" / f"IMG_{k}.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / split / "dog" / "notes").write_text("taken in May")
    if split:
        (folder / "test" / "cat").mkdir(parents=True)
        image_tools.write_image(folder / "test" / "cat" / "b.png", image_tools.random_pixels(1))
    with pytest.raises(DataError) as refused:
        ingest_folder(folder)
    assert str(refused.value).endswith(
        f"{split}dog/ (they hold other files: 3 .heic, 1 without suffix; convert images to a "
        "format above); add images or remove the folder"
    )


def test_a_class_left_without_images_by_drop_invalid_is_an_error(
    ingest_folder, image_tools, tmp_path
):
    folder = tmp_path / "images"
    for k in range(3):
        image_tools.write_image(folder / "cat" / f"{k}.png", image_tools.random_pixels(k))
        (folder / "dog" / f"{k}.png").parent.mkdir(parents=True, exist_ok=True)
        (folder / "dog" / f"{k}.png").write_bytes(b"")

    with pytest.raises(DataError, match=r"classes \['dog'\] have no images left in the train"):
        ingest_folder(folder, drop_invalid=True, val_fraction=0.0, test_fraction=0.0)


def test_a_single_class_is_an_error(ingest_folder, image_tools, tmp_path):
    folder = tmp_path / "images"
    for k in range(4):
        image_tools.write_image(folder / "cat" / f"{k}.png", image_tools.random_pixels(k))

    with pytest.raises(DataError, match=r"only one class folder \('cat'\).*at least 2 classes"):
        ingest_folder(folder)


def test_images_at_the_top_level_only_are_no_classes(ingest_folder, image_tools, tmp_path):
    folder = tmp_path / "images"
    for k in range(3):
        image_tools.write_image(folder / f"{k}.png", image_tools.random_pixels(k))

    with pytest.raises(DataError, match=r"no class folders; 3 files at the top level are ignored"):
        ingest_folder(folder)


def test_a_class_with_too_few_images_for_the_splits_is_an_error(
    ingest_folder, image_tools, tmp_path
):
    folder = tmp_path / "images"
    for name, count in (("cat", 5), ("dog", 2)):
        for k in range(count):
            image_tools.write_image(folder / name / f"{k}.png", image_tools.random_pixels(k))

    with pytest.raises(DataError, match=r"class 'dog' has 2; each class needs at least 3"):
        ingest_folder(folder)


def test_a_train_folder_beside_class_folders_is_ambiguous(parts_folder, ingest_folder):
    folder = parts_folder(layout="split_folders", num_samples=40)
    (folder / "extras").mkdir()

    with pytest.raises(DataError, match=r"must be split folders .* also has \['extras'\]"):
        ingest_folder(folder)


def test_val_and_validation_folders_together_are_ambiguous(parts_folder, ingest_folder):
    folder = parts_folder(layout="split_folders", num_samples=40, val_fraction=0.2)
    (folder / "validation").mkdir()

    with pytest.raises(DataError, match=r"several folders name the same split"):
        ingest_folder(folder)


def test_a_class_of_test_or_val_that_train_lacks_is_named(parts_folder, ingest_folder):
    folder = parts_folder(layout="split_folders", num_samples=40)
    classes = sorted(p.name for p in (folder / "train").iterdir())
    (folder / "train" / classes[0]).rename(folder.parent / "spare")  # test/<it>/ stays

    with pytest.raises(
        DataError, match=rf"no counterpart under train/: test/{re.escape(classes[0])}/;"
    ):
        ingest_folder(folder)


def test_split_folders_without_train_are_no_classes(parts_folder, ingest_folder):
    folder = parts_folder(layout="split_folders", num_samples=40)
    (folder / "train").rename(folder.parent / "elsewhere")  # test/ alone: not one class

    with pytest.raises(DataError, match=r"has split folders \['test'\] but no train/"):
        ingest_folder(folder)


def test_a_missing_folder_or_a_file_is_an_error(ingest_folder, tmp_path):
    with pytest.raises(DataError, match="folder does not exist") as error:
        ingest_folder(tmp_path / "nope")
    assert error.value.file == str(tmp_path / "nope")
    a_file = tmp_path / "images.zip"
    a_file.write_bytes(b"PK")
    with pytest.raises(DataError, match="is not a folder"):
        ingest_folder(a_file)
