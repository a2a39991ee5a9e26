"""Byte-identical images across splits or under two classes are found and reported."""

from __future__ import annotations

import shutil

from components.data.duplicates import ImageDigest, duplicate_notes, find_duplicates


def test_copies_in_a_later_split_and_under_another_class_are_told_apart():
    images = [
        ImageDigest("test", "test/cat/a.jpg", 0, "d1"),
        ImageDigest("train", "train/cat/b.jpg", 0, "d1"),  # the earliest copy: train
        ImageDigest("val", "val/cat/c.jpg", 0, "d1"),
        ImageDigest("test", "test/dog/d.jpg", 1, "d2"),
        ImageDigest("val", "val/dog/e.jpg", 1, "d2"),  # no train copy: val is the earliest
        ImageDigest("train", "train/cat/f.jpg", 0, "d3"),
        ImageDigest("train", "train/dog/f.jpg", 1, "d3"),  # one picture, two classes
        ImageDigest("train", "train/cat/g.jpg", 0, "d4"),
        ImageDigest("train", "train/cat/h.jpg", 0, "d4"),  # same split, same class: harmless
        ImageDigest("test", "test/cat/i.jpg", 0, "d5"),
    ]

    found = find_duplicates(images, ("cat", "dog"))

    assert found == {
        "across_splits": 3,
        "across_splits_examples": [
            ["test/cat/a.jpg", "train/cat/b.jpg"],
            ["test/dog/d.jpg", "val/dog/e.jpg"],
            ["val/cat/c.jpg", "train/cat/b.jpg"],
        ],
        "across_classes": 1,
        "across_classes_examples": [["train/cat/f.jpg (cat)", "train/dog/f.jpg (dog)"]],
    }
    assert duplicate_notes(found) == [
        "3 val/test images are byte-identical to an image of an earlier split (e.g. "
        "test/cat/a.jpg = train/cat/b.jpg): the scores measured on them are inflated; remove "
        "one copy.",
        "1 image appears byte-identical under more than one class (e.g. train/cat/f.jpg (cat), "
        "train/dog/f.jpg (dog)): a labelling error?",
    ]
    assert find_duplicates(images[7:], ("cat", "dog")) == {}


def test_an_ingested_folder_records_its_duplicates_in_meta(
    parts_folder, ingest_folder, image_tools
):
    folder = parts_folder(layout="split_folders", num_samples=40)
    clean = ingest_folder(folder, val_fraction=0.0)  # train stays train
    assert "duplicates" not in clean.meta

    train = sorted((folder / "train").rglob("*.png"))
    copied = folder / "test" / train[0].parent.name / "copy.png"
    shutil.copy(train[0], copied)
    other_class = next(p for p in (folder / "train").iterdir() if p != train[0].parent)
    shutil.copy(train[1], other_class / "stray.png")

    found = ingest_folder(folder, val_fraction=0.0).meta["duplicates"]

    relative = [p.relative_to(folder).as_posix() for p in (copied, train[0], train[1])]
    assert found["across_splits_examples"] == [relative[:2]]
    assert found["across_classes"] == 1
    stray = (other_class / "stray.png").relative_to(folder).as_posix()
    assert {name.split(" (")[0] for name in found["across_classes_examples"][0]} == {
        relative[2],
        stray,
    }
