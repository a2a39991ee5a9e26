"""Atomic writes: a file or folder appears whole under its final name, or not at all.

Each writer builds a temporary sibling (same folder, so the rename stays on one filesystem) and
renames it into place, so a crash or a kill mid-write leaves the previous version intact and a
reader that already opened the old file keeps reading it whole.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename."""
    path = Path(path)
    tmp = sibling(path, "tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary sibling and a rename."""
    return write_bytes(path, text.encode(encoding))


def copy_tree(source: Path | str, dest: Path | str) -> Path:
    """Copy the folder ``source`` to ``dest``, replacing any folder already there.

    The copy is made under a temporary name first; if it fails, ``dest`` is left as it was.
    Linux cannot swap two folders in one rename, so the old ``dest`` is renamed aside, the new
    one into place, and the old one deleted: between those two renames both complete copies
    exist on disk, under ``.<name>.old-*`` and ``.<name>.tmp-*``.
    """
    dest = Path(dest)
    tmp = sibling(dest, "tmp")
    try:
        shutil.copytree(source, tmp)
        if dest.exists():
            old = sibling(dest, "old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def sibling(path: Path, kind: str) -> Path:
    """A hidden, unique name beside ``path`` (concurrent writers never share one)."""
    return path.with_name(f".{path.name}.{kind}-{secrets.token_hex(4)}")


# A folder being built in place of a whole dataset: ".tmp-<host>-<pid>-<hex>" (host: its letters
# and digits), or ".tmp-<32 hex>" as sennflow named them before 2026-12-07.
_BUILDING = re.compile(r"\.tmp-(?:(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-)?[0-9a-f]{8,32}")
_LEGACY_AGE_S = 24 * 3600


def building_dir(parent: Path) -> Path:
    """A new hidden folder in ``parent`` to build a dataset in before renaming it into place;
    its name says which process on which host builds it (:func:`remove_abandoned`)."""
    path = parent / f".tmp-{_host()}-{os.getpid()}-{secrets.token_hex(8)}"
    path.mkdir(parents=True)
    return path


def remove_abandoned(parent: Path) -> int:
    """Delete the folders of :func:`building_dir` in ``parent`` whose process, on this host, is
    gone: a killed or interrupted build leaves one behind, and it can hold most of a dataset.
    Another host's are left alone; an unnamed older one only once it is a day old. Returns how
    many were deleted."""
    import psutil

    removed = 0
    for path in parent.glob(".tmp-*") if parent.is_dir() else ():
        match = _BUILDING.fullmatch(path.name)
        if match is None or not path.is_dir():
            continue
        if match["pid"] is None:
            gone = time.time() - path.stat().st_mtime > _LEGACY_AGE_S
        else:
            gone = match["host"] == _host() and not psutil.pid_exists(int(match["pid"]))
        if gone:
            shutil.rmtree(path, ignore_errors=True)
            removed += not path.exists()
    return removed


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40]
