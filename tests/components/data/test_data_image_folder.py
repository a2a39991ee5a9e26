"""Image folders become Parquet datasets of encoded bytes, paths and labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from components.data.images import decode_rgb
from components.data.layout import split_files
from components.data.parts import parts_task
from components.data.reader import load_meta, read_split

SIZE = 16


def _files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_class_folders_become_sorted_classes_with_every_file_once(
    parts_folder, ingest_folder, image_tools
):
    folder = parts_folder(num_samples=32, formats=("png", "jpeg", "webp", "bmp"))

    result = ingest_folder(folder)

    meta = result.meta
    assert meta["class_names"] == sorted(parts_task(4).class_names)
    assert meta["row_counts"] == {"train": 24, "val": 4, "test": 4}
    rows = [r for split in image_tools.all_rows(result.path).values() for r in split]
    assert sorted(r["path"] for r in rows) == sorted(_files(folder))
    for row in rows:
        assert row["path"].split("/")[0] == meta["class_names"][row["y"]]
        assert row["image"] == (folder / row["path"]).read_bytes()


def test_meta_describes_an_image_dataset(parts_folder, ingest_folder):
    meta = ingest_folder(parts_folder()).meta

    assert meta["kind"] == "image" and meta["layout"] == "class_folders"
    assert meta["image_size"] == SIZE
    assert meta["feature_shape"] == [3, SIZE, SIZE] and meta["num_features"] == 3 * SIZE * SIZE
    assert meta["normalization"]["source"] == "dataset"
    assert meta["dropped_files"] == [] and meta["dropped_rows"] == 0
    assert meta["ignored_files"] == 0


def test_dataset_statistics_are_those_of_the_decoded_train_pixels(
    parts_folder, ingest_folder, image_tools
):
    folder = parts_folder(formats=("png", "jpeg"))
    result = ingest_folder(folder)

    train = image_tools.split_rows(result.path, "train")
    pixels = (
        np.concatenate(
            [decode_rgb((folder / r["path"]).read_bytes()).numpy().reshape(3, -1) for r in train],
            axis=1,
        )
        / 255.0
    )
    normalization = result.meta["normalization"]
    np.testing.assert_allclose(normalization["mean"], pixels.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(normalization["std"], pixels.std(axis=1), rtol=1e-9)


def test_imagenet_normalization_records_imagenet_statistics(parts_folder, ingest_folder):
    meta = ingest_folder(parts_folder(), normalization="imagenet").meta

    assert meta["normalization"] == {
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "source": "imagenet",
    }


def test_read_split_decodes_the_files_themselves(parts_folder, ingest_folder, image_tools):
    folder = parts_folder(formats=("png", "bmp"))  # lossless: pixels known exactly
    result = ingest_folder(folder)

    x, y = read_split(result.path, "test", normalize=False)

    rows = image_tools.split_rows(result.path, "test")
    expected = np.stack([decode_rgb((folder / r["path"]).read_bytes()).numpy() for r in rows])
    assert x.shape == (len(rows), 3, SIZE, SIZE) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected / 255.0, atol=1e-6)
    assert y.tolist() == [r["y"] for r in rows]
    meta = load_meta(result.path)
    standardised, _ = read_split(result.path, "test")
    np.testing.assert_allclose(
        standardised, (x - meta.channel_mean[:, None, None]) / meta.channel_std[:, None, None],
        atol=1e-5,
    )  # fmt: skip


@pytest.mark.parametrize("val_folder", [None, "val", "validation"])
def test_split_folders_fix_the_split_and_val_is_carved_from_train(
    parts_folder, ingest_folder, image_tools, val_folder
):
    fractions = {"val_fraction": 0.2} if val_folder else {}
    folder = parts_folder(num_samples=40, layout="split_folders", **fractions)
    if val_folder and val_folder != "val":
        (folder / "val").rename(folder / val_folder)

    result = ingest_folder(folder)

    rows = image_tools.all_rows(result.path)
    assert result.meta["layout"] == "split_folders"
    assert result.meta["fixed_splits"] == (
        ["train", "val", "test"] if val_folder else ["train", "test"]
    )
    assert {r["path"] for r in rows["test"]} == {f"test/{f}" for f in _files(folder / "test")}
    if val_folder:
        assert {r["path"] for r in rows["val"]} == {
            f"{val_folder}/{f}" for f in _files(folder / val_folder)
        }
        assert {r["path"] for r in rows["train"]} == {
            f"train/{f}" for f in _files(folder / "train")
        }
    else:  # carved out of train/, every class in both
        from_train = {r["path"] for r in rows["train"] + rows["val"]}
        assert from_train == {f"train/{f}" for f in _files(folder / "train")}
        assert {r["y"] for r in rows["val"]} == set(range(4))
    for row in rows["train"] + rows["test"]:
        assert row["path"].split("/")[1] == result.meta["class_names"][row["y"]]


def test_rows_of_a_split_come_in_a_seeded_mixed_order(parts_folder, ingest_folder, image_tools):
    folder = parts_folder(num_samples=40)
    first = [r["path"] for r in image_tools.split_rows(ingest_folder(folder).path, "train")]
    again = [r["path"] for r in image_tools.split_rows(ingest_folder(folder, seed=0).path, "train")]
    other = [r["path"] for r in image_tools.split_rows(ingest_folder(folder, seed=1).path, "train")]

    assert first == again and first != sorted(first) and first != other


def test_unchanged_folder_hits_the_cache_and_a_changed_image_misses_it(
    parts_folder, ingest_folder, image_tools, tmp_path
):
    folder = parts_folder(formats=("png",))
    first = ingest_folder(folder)
    moved = folder.rename(tmp_path / "moved")

    assert ingest_folder(moved).cache_hit  # same contents elsewhere
    victim = sorted(moved.rglob("*.png"))[0]
    image_tools.write_image(victim, image_tools.random_pixels(7))
    changed = ingest_folder(moved)

    assert not changed.cache_hit and changed.path != first.path
    assert changed.meta["fingerprint"] != first.meta["fingerprint"]


def test_class_order_is_by_name_whatever_the_creation_order_and_survives_new_files(
    ingest_folder, image_tools, tmp_path
):
    folder = tmp_path / "images"
    for seed, name in enumerate(["zebra", "mouse", "cat"]):  # created in reverse order
        for k in range(3):
            image_tools.write_image(folder / name / f"{k}.png", image_tools.random_pixels(seed))
    first = ingest_folder(folder)
    image_tools.write_image(folder / "cat" / "new.png", image_tools.random_pixels(9))

    second = ingest_folder(folder)

    assert first.meta["class_names"] == second.meta["class_names"] == ["cat", "mouse", "zebra"]
    labels = {
        r["path"]: r["y"] for split in image_tools.all_rows(second.path).values() for r in split
    }
    assert labels["cat/new.png"] == 0 and labels["mouse/0.png"] == 1 and labels["zebra/2.png"] == 2


def test_grey_rgba_palette_bmp_webp_gif_and_tiff_images_are_read_as_rgb(
    ingest_folder, image_tools, tmp_path
):
    folder = tmp_path / "images"
    pixels = image_tools.random_pixels(0)
    grey = image_tools.write_image(folder / "a" / "grey.png", pixels, mode="L")
    image_tools.write_image(folder / "a" / "rgba.png", pixels, mode="RGBA")
    image_tools.write_image(folder / "a" / "palette.png", pixels, mode="P")
    image_tools.write_image(folder / "b" / "plain.bmp", pixels)
    image_tools.write_image(folder / "b" / "lossless.webp", pixels, lossless=True)
    image_tools.write_image(folder / "b" / "photo.JPG", pixels)
    second = Image.fromarray(image_tools.random_pixels(1))  # an animation: the first frame is read
    options = {"lossless": True, "save_all": True, "append_images": [second]}
    image_tools.write_image(folder / "b" / "animated.webp", pixels, **options)
    # a 16-bit greyscale PNG (scans, microscopy) holding the grey image's values times 257
    deep = np.asarray(Image.open(grey), dtype=np.uint16) * 257
    Image.fromarray(deep).save(folder / "a" / "grey16.png")
    Image.fromarray(deep).save(folder / "a" / "grey16.tif")  # Pillow reads TIFF, 16 bits kept
    image_tools.write_image(folder / "b" / "photo.tiff", pixels, save_all=True,
                            append_images=[second])  # fmt: skip
    image_tools.write_image(folder / "b" / "animated.gif", pixels, mode="P", save_all=True,
                            append_images=[second])  # fmt: skip

    result = ingest_folder(folder, val_fraction=0.0, test_fraction=0.0)

    assert result.meta["row_counts"]["train"] == 11
    x, _ = read_split(result.path, "train", normalize=False)
    paths = [r["path"] for r in image_tools.split_rows(result.path, "train")]
    by_path = dict(zip(paths, x, strict=True))
    for exact in (
        "a/rgba.png",
        "b/plain.bmp",
        "b/lossless.webp",
        "b/animated.webp",
        "b/photo.tiff",
    ):
        np.testing.assert_allclose(by_path[exact] * 255, pixels.transpose(2, 0, 1), atol=1e-3)
    grey_pixels = by_path[grey.relative_to(folder).as_posix()]
    assert np.array_equal(grey_pixels[0], grey_pixels[1])
    assert np.array_equal(grey_pixels[1], grey_pixels[2])
    np.testing.assert_allclose(by_path["a/grey16.png"], grey_pixels, atol=1e-6)
    np.testing.assert_allclose(by_path["a/grey16.tif"], grey_pixels, atol=1e-6)
    palette = np.asarray(Image.open(folder / "a" / "palette.png").convert("RGB"))
    np.testing.assert_allclose(
        by_path["b/animated.gif"] * 255, palette.transpose(2, 0, 1), atol=1e-3
    )


def test_nested_subfolders_of_a_class_belong_to_that_class(ingest_folder, image_tools, tmp_path):
    folder = tmp_path / "images"
    for name in ("cat", "dog"):
        image_tools.write_image(folder / name / "top.png", image_tools.random_pixels(1))
        image_tools.write_image(folder / name / "2024" / "deep.png", image_tools.random_pixels(2))

    result = ingest_folder(folder, val_fraction=0.0, test_fraction=0.0)

    labels = {r["path"]: r["y"] for r in image_tools.split_rows(result.path, "train")}
    assert labels == {"cat/top.png": 0, "cat/2024/deep.png": 0, "dog/top.png": 1,
                      "dog/2024/deep.png": 1}  # fmt: skip


def test_hidden_files_and_files_outside_class_folders_are_ignored_and_counted(
    parts_folder, ingest_folder, image_tools
):
    folder = parts_folder(layout="split_folders", num_samples=40)
    (folder / "README.txt").write_text("about these images")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "train" / "labels.csv").write_text("a,b")  # split level
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    some_class = next((folder / "train").iterdir())
    (some_class / ".hidden.png").write_bytes(b"not even an image")
    (some_class / ".thumbs").mkdir()
    messages: list[str] = []

    result = ingest_folder(folder, progress=messages.append)

    assert result.meta["ignored_files"] == 6
    assert sum(result.meta["row_counts"].values()) == 40
    assert any(m.startswith("ignored 6 files: hidden files") for m in messages), messages


def test_parts_per_split_follow_partition_rows(parts_folder, ingest_folder):
    result = ingest_folder(parts_folder(num_samples=32), partition_rows=5)

    for split, rows in result.meta["row_counts"].items():
        assert len(split_files(result.path, split)) == math.ceil(rows / 5)
