"""An image folder's ``masks/`` become the dataset's mask column, aligned with the images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from components.data.errors import DataError
from components.data.fingerprint import fingerprint
from components.data.image_folder import scan_folder
from components.data.parts import class_regions, generate_parts
from components.data.parts_folder import chunk_seed, write_parts_folder
from components.data.reader import read_masks, read_split
from components.data.spec import DataSpec

SIZE = 8
# Image shape (H, W) -> the rows/columns of its mask that the ingested 8x8 mask keeps: equal
# size as is; wider: the centre crop; twice the size: nearest-neighbour, every other pixel.
SHAPES = {
    (8, 8): np.s_[:, :],
    (8, 12): np.s_[:, 2:10],
    (16, 16): np.s_[::2, ::2],
}


def _label_map(seed: int, shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 6, shape, dtype=np.uint8)


def _write_folder(root, image_tools, *, layout_prefix: str = "") -> dict[str, np.ndarray]:
    """Classes ``a`` and ``b``, 4 PNGs each in the sizes of :data:`SHAPES`, with label maps
    under ``masks/``; the image's red channel is ``40 x`` its labels. Returns each image's
    relative path and its full-size label map."""
    shapes = [*SHAPES, (8, 8)]
    labels = {}
    for c, name in enumerate("ab"):
        for i, shape in enumerate(shapes):
            rel = f"{layout_prefix}{name}/{i:03d}"
            label = _label_map(10 * c + i, shape)
            pixels = image_tools.random_pixels(10 * c + i, *shape)
            pixels[..., 0] = label * 40
            image_tools.write_image(root / f"{rel}.png", pixels)
            image_tools.write_image(root / "masks" / f"{rel}.png", label)
            labels[f"{rel}.png"] = label
    return labels


def test_masks_round_trip_through_ingest_aligned_with_the_decoded_images(
    tmp_path, ingest_folder, image_tools
):
    labels = _write_folder(tmp_path / "images", image_tools)
    image_tools.write_image(tmp_path / "images/masks/a/orphan.png", np.zeros((8, 8), np.uint8))

    result = ingest_folder(
        tmp_path / "images", image_size=SIZE, val_fraction=0.25, test_fraction=0.25
    )

    assert result.meta["class_names"] == ["a", "b"]  # masks/ is not a class
    assert result.meta["mask_shape"] == [SIZE, SIZE] and result.meta["ignored_files"] == 1
    for split, rows in image_tools.all_rows(result.path).items():
        masks = read_masks(result.path, split)
        images, _ = read_split(result.path, split, normalize=False)
        assert len(masks) == len(rows) > 0
        for row, mask, image in zip(rows, masks, images, strict=True):
            label = labels[row["path"]]
            np.testing.assert_array_equal(mask, label[SHAPES[label.shape]])
            if label.shape != (16, 16):  # no resampling: the pixels under each label are known
                np.testing.assert_array_equal(np.rint(image[0] * 255), mask * 40.0)


def test_masks_folder_is_not_a_split_folder_either(tmp_path, image_tools):
    _write_folder(tmp_path, image_tools, layout_prefix="train/")
    _write_folder(tmp_path, image_tools, layout_prefix="test/")

    listing = scan_folder(tmp_path)

    assert listing.layout == "split_folders" and listing.class_names == ("a", "b")
    assert listing.masks == tuple(f"masks/{rel}" for rel in listing.files)


def test_a_missing_mask_is_named(tmp_path, image_tools):
    _write_folder(tmp_path, image_tools)
    (tmp_path / "masks/b/002.png").unlink()

    with pytest.raises(DataError, match=r"1 of 8 are missing: masks/b/002.png \(for b/002.png\)"):
        scan_folder(tmp_path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x89PNG\r\n\x1a\n broken", "not a readable PNG"),
        (np.zeros((8, 8, 3), np.uint8), "single-channel .* has 3 channels"),
        (np.zeros((8, 9), np.uint8), "the mask is 9x8 pixels, its image a/000.png 8x8"),
    ],
    ids=["corrupt", "colour", "wrong-size"],
)
def test_an_unusable_mask_stops_the_ingest_naming_it(
    tmp_path, ingest_folder, image_tools, content, problem
):
    _write_folder(tmp_path / "images", image_tools)
    bad = tmp_path / "images/masks/a/000.png"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        Image.fromarray(content).save(bad)

    with pytest.raises(DataError, match=problem) as raised:
        ingest_folder(tmp_path / "images", image_size=SIZE, drop_invalid=True)

    assert raised.value.file == str(bad)
    assert image_tools.cache_is_clean(tmp_path / "cache")


def test_the_fingerprint_covers_the_masks(tmp_path, image_tools):
    labels = _write_folder(tmp_path, image_tools)
    spec = DataSpec(source="image_folder", path=str(tmp_path), image_size=SIZE)
    before = fingerprint(spec)

    image_tools.write_image(tmp_path / "masks/a/000.png", labels["a/000.png"] + 1)

    assert fingerprint(spec) != before


def test_parts_folder_masks_are_the_parts_of_each_image_class(tmp_path):
    folder = write_parts_folder(tmp_path, num_samples=16, size=16, masks=True)
    data = generate_parts(16, 4, image_shape=(3, 16, 16), seed=chunk_seed(0, 0))
    names = data.task.class_names
    labels = [[k + 1 for k in ks] for ks in data.task.class_parts]
    truth = class_regions(data.masks, data.y, labels)

    for i, (region, label) in enumerate(zip(truth, data.y, strict=True)):
        written = np.asarray(Image.open(folder / f"masks/{names[label]}/{i:06d}.png"))
        np.testing.assert_array_equal(written, region * 255)
    assert (truth != (data.masks > 0)).any()  # some distractor was left out
