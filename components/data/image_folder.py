"""Find the images of a folder and their classes: the ``image_folder`` source, before reading.

Two layouts are accepted (``meta.json`` records which as ``layout``):

* ``class_folders``: ``<root>/<class>/<files>``; the split is the seeded stratified one.
* ``split_folders``: ``<root>/train/<class>/<files>`` plus ``test/`` and/or ``val/`` (also
  spelt ``valid/`` or ``validation/``), which fix the split; a split without a folder is carved
  out of ``train/`` (stratified, seeded, with the spec's fraction). A root holding a ``train/``
  folder is read this way, and then every other folder there must be a split folder.

Class names are the class folder names, sorted, so label ``k`` is the ``k``-th name whatever
order the filesystem lists them in, and adding files never renumbers the classes.

What counts as data: every non-hidden file below a class folder, *including nested subfolders*
(as torchvision's ``ImageFolder`` does: ``bird/2024/a.jpg`` is a ``bird``; the ``path`` column
keeps the nested path). Files whose suffix is not an image suffix there are invalid data (an
error, or dropped with ``drop_invalid``). Ignored, and counted: hidden files and folders (name
starting with ``.``) anywhere, files at the root (``README.txt``) and files directly in a split
folder.

Masks (optional): a folder named exactly ``masks`` at the root is never a class (nor a split);
it holds one single-channel PNG per image at the image's relative path with the suffix
``.png`` (``masks/bird/2024/a.png`` for ``bird/2024/a.jpg``; ``masks/train/bird/a.png`` in
the ``split_folders`` layout), a label map or a binary mask of the image as decoded (upright).
All or none: with a ``masks`` folder, every image needs its mask (a missing one is an error
naming it); files there that belong to no image are ignored, and counted. The fingerprint
covers the masks' bytes too.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import posixpath
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from components.data.errors import DataError
from components.data.image_ingest import BadImage, ImageRows
from components.data.images import IMAGE_SUFFIXES
from components.data.layout import SPLIT_NAMES

# The root folder holding the masks (a reserved name: never a class or split folder).
MASKS_FOLDER = "masks"
# Measured on 100,000 small files (2 cores): batches of 1,000 files on 4 threads hash about
# 3x faster than one thread pool task per file.
_HASH_THREADS = 4
_HASH_BATCH = 1000
_HASH_CHUNK_BYTES = 1 << 20
_SHOWN_MASKS = 5


@dataclass(frozen=True)
class FolderListing:
    """What a folder holds, before any file is read.

    Attributes:
        root: The folder.
        layout: ``class_folders`` or ``split_folders``.
        class_names: Class folder names, sorted; label ``k`` is ``class_names[k]``.
        files: Relative POSIX paths of the image files (by suffix), sorted.
        labels: The class index of each of ``files``.
        splits: Per file, the split its folder fixes (``split_folders``), else ``None``.
        given_splits: The splits that have a folder (empty for ``class_folders``).
        not_images: Relative paths of files in class folders without an image suffix.
        ignored: Hidden files and folders, and files outside class folders, not looked into.
        masks: Per file, the relative path of its mask, when the folder has ``masks/``.
    """

    root: Path
    layout: str
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: tuple[int, ...]
    splits: tuple[str, ...] | None
    given_splits: tuple[str, ...]
    not_images: tuple[str, ...]
    ignored: int
    masks: tuple[str, ...] | None = None


def check_folder(path: str | Path) -> Path:
    """``path`` as a folder; :class:`DataError` when it is missing or a file."""
    root = Path(path)
    if not root.exists():
        raise DataError("folder does not exist", file=str(path))
    if not root.is_dir():
        raise DataError(
            "is not a folder; data=image_folder expects a folder with one subfolder per class",
            file=str(path),
        )
    return root


def scan_folder(path: str | Path) -> FolderListing:
    """List the image files of ``path`` and their classes (see the module docstring).

    Raises:
        DataError: The path is missing or not a folder, the layout is ambiguous, there are
            fewer than two classes, a class folder holds no image file, or ``masks/`` lacks
            the mask of an image.
    """
    root = check_folder(path)
    folders, ignored = _subfolders(root)
    masks = folders.pop(MASKS_FOLDER, None)
    has_train = any(name.lower() == "train" for name in folders)
    if folders and not has_train and all(name.lower() in SPLIT_NAMES for name in folders):
        raise DataError(
            f"has split folders {sorted(folders)} but no train/: put the training images in "
            "train/<class>/<image> (or use class folders at the top level)",
            file=str(path),
        )
    if has_train:
        listing = _scan_split_folders(root, folders, ignored)
    else:
        listing = _scan_class_folders(root, folders, ignored)
    return listing if masks is None else _with_masks(listing, masks)


def mask_path(image: str) -> str:
    """The relative path of the mask of the image at relative path ``image``."""
    return f"{MASKS_FOLDER}/{posixpath.splitext(image)[0]}.png"


def folder_rows(listing: FolderListing) -> ImageRows:
    """The listing as candidate rows; files without an image suffix are already rejected."""
    suffixes = ", ".join(IMAGE_SUFFIXES)
    return ImageRows(
        paths=listing.files,
        labels=np.asarray(listing.labels, np.int64),
        class_names=listing.class_names,
        layout=listing.layout,
        where=str(listing.root),
        splits=listing.splits,
        given_splits=listing.given_splits,
        root=listing.root,
        rejected=tuple(
            BadImage(rel, "not_an_image", f"not an image file: expected one of {suffixes}")
            for rel in listing.not_images
        ),
        ignored=listing.ignored,
        masks=listing.masks,
    )


def folder_digest(listing: FolderListing) -> str:
    """SHA-256 over every data file's (and mask's) relative path and contents.

    The root itself is left out, so a moved folder with the same contents has the same digest.
    Files are hashed in batches by a few threads: reading many small files is bound by system
    calls and per-file Python overhead, so batches cost far less than one task per file.
    """
    names = sorted(listing.files + listing.not_images + (listing.masks or ()))
    root = str(listing.root)
    batches = [names[i : i + _HASH_BATCH] for i in range(0, len(names), _HASH_BATCH)]
    total = hashlib.sha256()
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        hashed = pool.map(functools.partial(_hash_batch, root), batches)
        for batch, digests in zip(batches, hashed, strict=True):
            for name, digest in zip(batch, digests, strict=True):
                total.update(f"{name}\0{digest}\n".encode())
    return total.hexdigest()


def _hash_batch(root: str, names: list[str]) -> list[str]:
    return [_file_sha256(os.path.join(root, name)) for name in names]


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as err:
        raise DataError(f"cannot read the file: {err.strerror or err}", file=path) from err
    return digest.hexdigest()


def _with_masks(listing: FolderListing, folder: Path) -> FolderListing:
    """``listing`` with each image's mask path; raise naming the masks that are missing."""
    masks = tuple(mask_path(rel) for rel in listing.files)
    present = _all_files(listing.root, folder)
    missing = [(rel, mask) for rel, mask in zip(listing.files, masks, strict=True)
               if mask not in present]  # fmt: skip
    if missing:
        shown = "; ".join(f"{mask} (for {rel})" for rel, mask in missing[:_SHOWN_MASKS])
        more = f"; and {len(missing) - _SHOWN_MASKS} more" if len(missing) > _SHOWN_MASKS else ""
        raise DataError(
            f"has a {MASKS_FOLDER}/ folder, so every image needs its mask, but "
            f"{len(missing)} of {len(masks)} are missing: {shown}{more}; add them, or remove "
            f"{MASKS_FOLDER}/ to train without masks",
            file=str(listing.root),
        )
    twice = sorted(mask for mask, count in Counter(masks).items() if count > 1)
    if twice:
        raise DataError(
            f"{len(twice)} masks would serve two images of the same name and another suffix "
            f"(e.g. {twice[:_SHOWN_MASKS]}); rename one image of each pair",
            file=str(listing.root),
        )
    extra = len(present) - len(masks)
    return dataclasses.replace(listing, masks=masks, ignored=listing.ignored + extra)


def _all_files(root: Path, folder: Path) -> set[str]:
    """Relative POSIX paths (from ``root``) of every file below ``folder``."""
    found = set()
    for path, _, names in os.walk(folder):
        rel = Path(path).relative_to(root).as_posix()
        found.update(f"{rel}/{name}" for name in names)
    return found


def _subfolders(folder: Path) -> tuple[dict[str, Path], int]:
    """Non-hidden subfolders of ``folder`` by name, and how many other entries it has."""
    folders: dict[str, Path] = {}
    ignored = 0
    for entry in os.scandir(folder):
        if not entry.name.startswith(".") and entry.is_dir():
            folders[entry.name] = Path(entry.path)
        else:
            ignored += 1
    return folders, ignored


def _scan_class_folders(root: Path, folders: dict[str, Path], ignored: int) -> FolderListing:
    class_names = _check_classes(root, sorted(folders), ignored)
    found = {name: _class_files(root, folders[name]) for name in class_names}
    others = [rel for _, bad, _ in found.values() for rel in bad]
    _check_not_empty(root, {name: files for name, (files, _, _) in found.items()}, others)
    rows = sorted((rel, label) for label, name in enumerate(class_names) for rel in found[name][0])
    return FolderListing(
        root=root,
        layout="class_folders",
        class_names=class_names,
        files=tuple(rel for rel, _ in rows),
        labels=tuple(label for _, label in rows),
        splits=None,
        given_splits=(),
        not_images=tuple(sorted(others)),
        ignored=ignored + sum(hidden for _, _, hidden in found.values()),
    )


def _scan_split_folders(root: Path, folders: dict[str, Path], ignored: int) -> FolderListing:
    by_split = _split_folders(root, folders)
    classes: dict[str, dict[str, Path]] = {}
    for split, folder in by_split.items():
        classes[split], split_ignored = _subfolders(folder)
        ignored += split_ignored
    class_names = _check_classes(root, sorted({c for cs in classes.values() for c in cs}), ignored)
    _check_trained(root, by_split, classes)
    files: dict[str, tuple[str, ...]] = {}
    rows, not_images = [], []
    for split, per_class in classes.items():
        for name, folder in per_class.items():
            images, bad, hidden = _class_files(root, folder)
            files[f"{by_split[split].name}/{name}"] = images
            rows += [(rel, class_names.index(name), split) for rel in images]
            not_images += bad
            ignored += hidden
    _check_not_empty(root, files, not_images)
    rows.sort()
    return FolderListing(
        root=root,
        layout="split_folders",
        class_names=class_names,
        files=tuple(rel for rel, _, _ in rows),
        labels=tuple(label for _, label, _ in rows),
        splits=tuple(split for _, _, split in rows),
        given_splits=tuple(split for split in ("train", "val", "test") if split in by_split),
        not_images=tuple(sorted(not_images)),
        ignored=ignored,
    )


def _split_folders(root: Path, folders: dict[str, Path]) -> dict[str, Path]:
    """The split folders by split name; anything else at the root makes the layout ambiguous."""
    others = sorted(name for name in folders if name.lower() not in SPLIT_NAMES)
    if others:
        raise DataError(
            f"has a train/ folder, so its folders must be split folders (train, val, test), but "
            f"it also has {others}; move class folders under train/ (and val/, test/)",
            file=str(root),
        )
    by_split: dict[str, list[str]] = {}
    for name in folders:
        by_split.setdefault(SPLIT_NAMES[name.lower()], []).append(name)
    twice = {split: sorted(names) for split, names in by_split.items() if len(names) > 1}
    if twice:
        raise DataError(f"several folders name the same split: {twice}", file=str(root))
    return {split: folders[names[0]] for split, names in by_split.items()}


def images_below(folder: Path) -> tuple[list[str], list[str], int]:
    """The image files below ``folder`` (paths relative to it, sorted), its other files, and
    how many hidden entries (names starting with ``.``) were skipped."""
    images, others, hidden = _class_files(folder, folder)
    return sorted(p.removeprefix("./") for p in images), others, hidden


def _class_files(root: Path, folder: Path) -> tuple[tuple[str, ...], list[str], int]:
    """Image files (relative paths) below one class folder, other files, and hidden entries.

    Plain strings rather than ``Path`` objects: pathlib costs more than the system calls here.
    """
    images, others, hidden = [], [], 0
    pending = [(str(folder), folder.relative_to(root).as_posix())]
    while pending:
        path, rel = pending.pop()
        for entry in os.scandir(path):
            if entry.name.startswith("."):
                hidden += 1
            elif entry.is_dir():
                pending.append((entry.path, f"{rel}/{entry.name}"))
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                images.append(f"{rel}/{entry.name}")
            else:
                others.append(f"{rel}/{entry.name}")
    return tuple(images), others, hidden


def _check_classes(root: Path, names: list[str], ignored: int) -> tuple[str, ...]:
    if len(names) >= 2:
        return tuple(names)
    found = f"only one class folder ({names[0]!r})" if names else "no class folders"
    hint = f"; {ignored} files at the top level are ignored" if ignored and not names else ""
    raise DataError(
        f"{found}{hint}: classification needs at least 2 classes, one subfolder of images each "
        "(<folder>/<class>/<image>, or <folder>/train/<class>/<image> with test/)",
        file=str(root),
    )


def _check_trained(
    root: Path, by_split: dict[str, Path], classes: dict[str, dict[str, Path]]
) -> None:
    """Raise naming the class folders of val/ or test/ that train/ lacks: a class the model
    never trains on can only be wrong."""
    untrained = sorted(
        f"{by_split[split].name}/{name}/"
        for split, per_class in classes.items()
        for name in per_class
        if name not in classes.get("train", {})
    )
    if untrained:
        raise DataError(
            f"{len(untrained)} class folder(s) have no counterpart under "
            f"{by_split['train'].name}/: {', '.join(untrained[:10])}"
            f"{' ...' if len(untrained) > 10 else ''}; a model cannot learn a class it never "
            "trains on: add its training images or remove the folder",
            file=str(root),
        )


def _check_not_empty(
    root: Path, files: dict[str, tuple[str, ...]], others: list[str] | tuple[str, ...] = ()
) -> None:
    """Raise naming every class folder without an image file, and the kinds of the other files
    (``others``, relative to ``root``) they hold: photos in a format not read, such as HEIC.

    Dropping such a class (even with ``drop_invalid``) would renumber the classes after it, and
    keeping it would leave a class the model never sees: either way the user should decide.
    """
    empty = sorted(f"{name}/" for name, images in files.items() if not images)
    if not empty:
        return
    kinds = Counter(
        PurePosixPath(rel).suffix.lower() or "without suffix"
        for rel in others
        if rel.removeprefix("./").startswith(tuple(empty))
    )
    held = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common(5))
    raise DataError(
        f"{len(empty)} class folder(s) hold no image file ({', '.join(IMAGE_SUFFIXES)}): "
        f"{', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}"
        + (f" (they hold other files: {held}; convert images to a format above)" if held else "")
        + "; add images or remove the folder",
        file=str(root),
    )
