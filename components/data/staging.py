"""Datasets and results on storage every Ray node can reach (``s3://``, ``gs://``, ...).

On a cluster without a shared filesystem the driver's dataset cache and run folder are local to
the driver. With ``ray.storage_path`` set to a URI, the driver uploads the ingested dataset once
(:func:`stage_dataset`) under ``<storage>/datasets/<name>``; each worker downloads it once per
node (:func:`local_dataset`) into a local cache; Ray persists checkpoints under the same URI,
from where the driver copies the best and last into the run folder. Local paths pass through
unchanged, so a single machine or an NFS mount works as before. Credentials and endpoints come
from the environment as for any pyarrow filesystem (``AWS_*``, ``AWS_ENDPOINT_URL`` for
S3-compatible servers such as MinIO, ``GOOGLE_APPLICATION_CREDENTIALS``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from components import atomic
from components.data.errors import DataError
from components.data.manifest import read_meta

# URI schemes pyarrow opens itself (and so Ray's storage and the staging here).
SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
# Written last: its presence means every file of the staged dataset is there.
_COMPLETE = "_STAGED"


def is_uri(path: str | Path | None) -> bool:
    """Whether ``path`` names remote storage (``scheme://...``) rather than a local path."""
    return path is not None and "://" in str(path) and not str(path).startswith("file://")


def storage_problem(path: str | None) -> str | None:
    """Why ``path`` cannot be a storage URI (checked offline), or None when it can."""
    if not is_uri(path):
        return None
    scheme, _, rest = str(path).partition("://")
    if scheme not in SCHEMES:
        return f"unsupported scheme {scheme!r} (one of {', '.join(SCHEMES)}, or a local path)"
    if not rest.strip("/"):
        return "no bucket or host after the scheme"
    return None


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for a URI or a local path."""
    return "/".join([str(base).rstrip("/"), *parts])


def stage_dataset(local: Path, storage: str) -> str:
    """Upload the dataset folder ``local`` to ``<storage>/datasets/<folder name>`` unless it is
    already there (folder names carry the content fingerprint); return its URI."""
    uri = join(storage, "datasets", Path(local).name)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        if fs.get_file_info(join(path, _COMPLETE)).type == pafs.FileType.NotFound:
            pafs.copy_files(str(Path(local).resolve()), path, destination_filesystem=fs)
            with fs.open_output_stream(join(path, _COMPLETE)) as marker:
                marker.write(b"")
    except (OSError, ValueError) as err:  # no bucket, no credentials, unreachable endpoint
        raise DataError(
            f"cannot stage the dataset under ray.storage_path: {err}", file=uri
        ) from err
    return uri


def dataset_for_workers(local: Path, storage: str | None) -> str:
    """Where Ray workers read the dataset ``local``: staged under ``storage`` when that is a
    URI (shared by every run using that storage), else the local folder itself."""
    if is_uri(storage):
        return stage_dataset(local, storage)
    return str(Path(local).resolve())


def local_dataset(path: str) -> Path:
    """A local folder holding the dataset at ``path``: ``path`` itself when local, else a copy
    downloaded once into this node's temporary directory (safe for concurrent workers).

    A download is kept only when the upload had finished (its ``_STAGED`` marker is there)
    and its parts match ``meta.json`` (sizes and row counts).

    Raises:
        DataError: The staged dataset is incomplete or damaged; nothing is kept.
    """
    if not is_uri(path):
        return Path(path)
    cache = Path(tempfile.gettempdir()) / "sennflow-datasets"
    target = cache / path.rstrip("/").rsplit("/", 1)[-1]
    if target.is_dir():
        return target
    atomic.remove_abandoned(cache)
    partial = atomic.building_dir(cache)
    try:
        fs, remote = pafs.FileSystem.from_uri(path)
        pafs.copy_files(remote, str(partial), source_filesystem=fs)
        _check_download(partial, path)
        (partial / _COMPLETE).unlink()
        with contextlib.suppress(OSError):  # another worker on this node may have won the race
            os.rename(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _check_download(folder: Path, uri: str) -> None:
    """Raise unless ``folder`` holds a complete staged dataset downloaded from ``uri``."""
    if not (folder / _COMPLETE).is_file():
        raise DataError(
            f"the staged dataset has no {_COMPLETE} marker: its upload did not finish", file=uri
        )
    meta, problem = read_meta(folder)
    if meta is None:
        raise DataError(f"the staged dataset is damaged: {problem}", file=uri)
