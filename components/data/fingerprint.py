"""Content fingerprints that name cached datasets."""

from __future__ import annotations

import hashlib
import json

from components.data.file_source import hash_file
from components.data.spec import FILE_SOURCES, DataSpec, source_fields

# Bump when the on-disk layout or the split/generation algorithms change: old caches then miss.
FORMAT_VERSION = 1


def content_fields(spec: DataSpec) -> dict:
    """The spec fields that change the dataset's content for this source.

    The file path is deliberately absent: the file's bytes stand for it, so a moved file
    with the same contents hits the cache.
    """
    fields = spec.to_dict()
    return {name: fields[name] for name in source_fields(spec.source) if name != "path"}


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
