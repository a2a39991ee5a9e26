"""Where a sweep's Tune experiment is stored, and how its files are read back.

A sweep on a local folder stores through :class:`LocalFiles`, so a driver killed while Tune
copies its state into the folder leaves every file whole and ``--resume`` can read it.
"""

from __future__ import annotations

import json
import logging
import os
import pickletools
import re
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from components import atomic
from components.data.staging import is_uri

LOCAL_FILES = "sennflow-local"
_PARTIAL = re.compile(r"\..+\.tmp-[0-9a-f]{8}")  # atomic.sibling(path, "tmp")
# The state files Tune resumes an experiment from, and how each is written (the searchers'
# are pickles whatever their suffix); of each kind Tune reads the newest name.
STATE_FILES = {
    "experiment_state-*.json": "json",
    "basic-variant-state-*.json": "pickle",
    "search_gen_state-*.json": "pickle",
    "searcher-state-*.pkl": "pickle",
}


def filesystem(storage_path: str) -> pafs.FileSystem | None:
    """The filesystem Tune stores the experiment under ``storage_path`` with: a
    :class:`LocalFiles` one for a local folder, None (Tune's own choice) for a URI."""
    return None if is_uri(storage_path) else pafs.PyFileSystem(LocalFiles())


def is_local(fs: pafs.FileSystem) -> bool:
    """Whether ``fs`` is this machine's disk, plain or through :class:`LocalFiles`."""
    return fs.type_name in ("local", f"py::{LOCAL_FILES}")


@contextmanager
def checkpoint_folder(checkpoint) -> Iterator[str]:
    """The Ray checkpoint's folder on this machine: its own folder where the storage is local
    (``Checkpoint.as_directory`` would copy it out of a :class:`LocalFiles` storage), else a
    downloaded copy."""
    if is_local(checkpoint.filesystem):
        yield checkpoint.path
    else:
        with checkpoint.as_directory() as folder:
            yield folder


def remove_partial_files(experiment: str) -> int:
    """Delete the temporary files a kill left in the local ``experiment`` (a :class:`LocalFiles`
    write that never reached its rename), so a resume does not carry them along; returns how
    many. The files they were meant to replace are whole."""
    if is_uri(experiment):
        return 0
    partial = [p for p in Path(experiment).rglob(".*.tmp-*") if _PARTIAL.fullmatch(p.name)]
    for path in partial:
        path.unlink(missing_ok=True)
    return len(partial)


@contextmanager
def stale_checkpoints_noted(note: Callable[[str], None]) -> Iterator[None]:
    """While a resumed sweep runs, a trial's first new checkpoint may make Tune delete an old
    one it had deleted already: its saved state lagged the deletes when the sweep stopped.
    Tune then logs a ``FileNotFoundError`` traceback as an ERROR, although it has registered
    the new checkpoint and the trial goes on; ``note`` gets one line about it instead."""
    controller = logging.getLogger("ray.tune.execution.tune_controller")

    def gone(record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, FileNotFoundError):
            return True
        frames = traceback.extract_tb(error.__traceback__)
        if not any(frame.name == "_delete_fs_path" for frame in frames):
            return True
        trial = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        note(f"{trial}: an old checkpoint was gone already (deleted before the sweep stopped)")
        return False

    controller.addFilter(gone)
    try:
        yield
    finally:
        controller.removeFilter(gone)


def check_state(experiment: str) -> None:
    """Refuse to resume the local Tune ``experiment`` when a state file Tune would read is cut
    short (a driver killed while Tune copied it, before sweeps stored through
    :class:`LocalFiles`): Tune would log the failure and silently start a new, empty search.

    Raises:
        ValueError: naming the unreadable file, what it means and what to do.
    """
    if is_uri(experiment):
        return
    for pattern, kind in STATE_FILES.items():
        if not (files := sorted(Path(experiment).glob(pattern))):
            continue
        try:
            data = files[-1].read_bytes()
            _parse(data, kind)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"cannot resume the sweep in {experiment}: Tune's saved state {files[-1]} is "
                f"unreadable ({type(err).__name__}: {err}); its driver was probably killed "
                "while writing it. The trials' folders there are kept; to run the sweep "
                "again, give it a new run.id"
            ) from None


def _parse(data: bytes, kind: str) -> None:
    """Raise ValueError where ``data`` is not a whole JSON document or a whole pickle (the
    pickle's opcodes are read, none is run)."""
    if kind == "json":
        json.loads(data)
    else:
        for _ in pickletools.genops(data):
            pass


class _RenamedOnClose:
    """A binary file written under a temporary sibling name and renamed to ``path`` on close."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._tmp = atomic.sibling(Path(path), "tmp")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed by close()

    def write(self, data) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self._file.tell()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            os.replace(self._tmp, self._path)


class LocalFiles(pafs.FileSystemHandler):
    """The local filesystem as a pyarrow filesystem handler whose output streams are atomic.

    Ray Tune copies its driver's state files and its trials' results into the storage folder
    with ``pyarrow.fs.copy_files``, which truncates each file before writing it: a kill inside
    that copy leaves a file cut short, and Tune then cannot resume the experiment. Wrapped in
    ``pyarrow.fs.PyFileSystem``, this handler writes each file under a hidden temporary name
    and renames it into place, so a reader sees either the old file or the new one, whole.
    Everything else is the local filesystem's own.
    """

    def __init__(self) -> None:
        self._fs = pafs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, LocalFiles)

    def __ne__(self, other) -> bool:
        return not self == other

    def __reduce__(self):
        return LocalFiles, ()

    def get_type_name(self) -> str:
        return LOCAL_FILES

    def normalize_path(self, path):
        return self._fs.normalize_path(path)

    def get_file_info(self, paths):
        return self._fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self._fs.get_file_info(selector)

    def create_dir(self, path, recursive):
        self._fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self._fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self._fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path):
        self._fs.delete_file(path)

    def move(self, src, dest):
        self._fs.move(src, dest)

    def copy_file(self, src, dest):
        tmp = atomic.sibling(Path(dest), "tmp")
        self._fs.copy_file(src, str(tmp))
        os.replace(tmp, dest)

    def open_input_stream(self, path):
        return self._fs.open_input_stream(path)

    def open_input_file(self, path):
        return self._fs.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pa.PythonFile(_RenamedOnClose(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self._fs.open_append_stream(path)
