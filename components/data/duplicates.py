"""Byte-identical images in an image dataset, found by a digest of each file's bytes.

A val or test image that is also a training image inflates the scores measured on it (folders
gathered from several sources, a test folder copied from train); one image under two classes is
a labelling error. Both are reported, not refused: the user decides which copy goes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from components.data.layout import SPLITS

EXAMPLES = 10  # pairs or groups kept in the meta (and shown) per kind


class ImageDigest(NamedTuple):
    """One written image: its split, path, label and digest of its bytes."""

    split: str
    path: str
    label: int
    digest: str


def digest(data: bytes) -> str:
    """A short digest of an image's bytes (BLAKE2b, 128 bits: collisions are negligible)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def find_duplicates(images: Iterable[ImageDigest], class_names: tuple[str, ...]) -> dict:
    """The meta's ``duplicates`` entry, empty when there are none.

    Returns:
        ``across_splits`` (the images whose bytes an image of an earlier split has, train
        before val before test, with up to :data:`EXAMPLES` ``[image, earlier copy]`` pairs
        in ``across_splits_examples``) and
        ``across_classes`` (the groups of identical images with more than one label, up to
        :data:`EXAMPLES` of them in ``across_classes_examples`` as ``"path (class)"`` lists);
        only the kinds that occur.
    """
    groups: dict[str, list[ImageDigest]] = defaultdict(list)
    for image in images:
        groups[image.digest].append(image)
    splits, classes = [], []
    for group in groups.values():
        if len(group) < 2:
            continue
        first = min(group, key=lambda image: (SPLITS.index(image.split), image.path))
        splits += [[image.path, first.path] for image in group if image.split != first.split]
        if len({image.label for image in group}) > 1:
            classes.append(sorted(f"{image.path} ({class_names[image.label]})" for image in group))
    found: dict = {}
    for kind, listed in (("across_splits", splits), ("across_classes", classes)):
        if listed:
            found |= {kind: len(listed), f"{kind}_examples": sorted(listed)[:EXAMPLES]}
    return found


def duplicate_notes(found: dict) -> list[str]:
    """One sentence per kind of duplicate in ``found`` (:func:`find_duplicates`), for the log
    and the report."""
    notes = []
    if found.get("across_splits"):
        count = found["across_splits"]
        first, twin = found["across_splits_examples"][0]
        are = "image is" if count == 1 else "images are"
        notes.append(
            f"{count} val/test {are} byte-identical to an image of an earlier split (e.g. "
            f"{first} = {twin}): the scores measured on them are inflated; remove one copy."
        )
    if found.get("across_classes"):
        count = found["across_classes"]
        example = ", ".join(found["across_classes_examples"][0])
        appear = "image appears" if count == 1 else "images appear"
        notes.append(
            f"{count} {appear} byte-identical under more than one class (e.g. {example}): a "
            "labelling error?"
        )
    return notes
