"""Content fingerprints that name cached datasets."""

from __future__ import annotations

import hashlib
import json

from components.data.file_source import hash_file
from components.data.spec import FILE_SOURCES, DataSpec

# Bump when the on-disk layout or the split/generation algorithms change: old caches then miss.
FORMAT_VERSION = 1

_COMMON_FIELDS = (
    "source",
    "feature_shape",
    "val_fraction",
    "test_fraction",
    "seed",
    "partition_rows",
)
_SYNTHETIC_FIELDS = ("num_samples", "num_features", "num_classes", "class_sep")
_PARTS_FIELDS = ("num_samples", "num_classes")
_FILE_FIELDS = ("label_column", "feature_columns", "drop_invalid")


def content_fields(spec: DataSpec) -> dict:
    """The spec fields that change the dataset's content for this source.

    The file path is deliberately absent: the file's bytes stand for it, so a moved file
    with the same contents hits the cache.
    """
    names = _COMMON_FIELDS
    if spec.source == "synthetic":
        names += _SYNTHETIC_FIELDS
    elif spec.source == "parts":
        names += _PARTS_FIELDS
    elif spec.source in FILE_SOURCES:
        names += _FILE_FIELDS
    fields = spec.to_dict()
    return {name: fields[name] for name in names}


def fingerprint(spec: DataSpec) -> str:
    """Hex SHA-256 over the content fields, the format version and (for files) the bytes.

    Raises:
        DataError: A file source's path does not exist or is empty.
    """
    payload = {"format_version": FORMAT_VERSION, "spec": content_fields(spec)}
    if spec.source in FILE_SOURCES:
        assert spec.path is not None
        payload["file_sha256"] = hash_file(spec.path)
    encoded = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()
