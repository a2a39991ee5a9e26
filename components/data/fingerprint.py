"""Content fingerprints that name cached datasets."""

from __future__ import annotations

import hashlib
import json

from components.data.file_source import hash_file, hash_parquet
from components.data.image_folder import folder_digest, scan_folder
from components.data.image_table import find_image_column
from components.data.spec import FILE_SOURCES, DataSpec, source_fields

# Bump when the on-disk layout, what ingest reads from a source or the split/generation
# algorithms change: old caches then miss.
FORMAT_VERSION = 3  # 2: meta.json records parts' sizes; 3: tables name features, leave out an index


def content_fields(spec: DataSpec, *, images: bool = False) -> dict:
    """The spec fields that change the dataset's content for this source.

    The file path is deliberately absent: the file's bytes stand for it, so a moved file
    with the same contents hits the cache.

    Args:
        spec: The spec.
        images: The (Parquet) source holds encoded images, so the image fields count too.
    """
    fields = spec.to_dict()
    names = source_fields(spec.source, images=images)
    return {name: fields[name] for name in names if name != "path"}


def fingerprint(spec: DataSpec) -> str:
    """Hex SHA-256 over the content fields, the format version and the source's bytes.

    For files the bytes are the file's; for an image folder, every data file's relative path
    and bytes (:func:`components.data.image_folder.folder_digest`).

    Raises:
        DataError: A file source's path does not exist or is empty; an image folder is
            missing or malformed.
    """
    payload = {"format_version": FORMAT_VERSION}
    if spec.source == "image_folder":
        assert spec.path is not None
        payload["files_sha256"] = folder_digest(scan_folder(spec.path))
    elif spec.source in FILE_SOURCES:
        assert spec.path is not None
        digest = hash_parquet if spec.source == "parquet" else hash_file
        payload["file_sha256"] = digest(spec.path)
    payload["spec"] = content_fields(spec, images=find_image_column(spec) is not None)
    encoded = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()
