"""Atomic writes: a file or folder appears whole under its final name, or not at all.

Each writer builds a temporary sibling (same folder, so the rename stays on one filesystem) and
renames it into place, so a crash or a kill mid-write leaves the previous version intact and a
reader that already opened the old file keeps reading it whole.
"""

from __future__ import annotations

import os
import secrets
import shutil
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
