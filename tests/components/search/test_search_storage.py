"""A sweep's storage: files written whole (a kill mid-copy cannot cut Tune's state short), and
a resume refused by name when an older sweep's state was cut short."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from components.search import storage

# Writes 1 MiB of "new" into ``path`` through the filesystem named by argv[1], then kills itself
# before the stream is closed: a driver killed inside Tune's copy.
_KILLED_WRITER = """
import os, signal, sys
import pyarrow.fs as pafs
from components.search import storage
fs = storage.filesystem(sys.argv[2]) if sys.argv[1] == "atomic" else pafs.LocalFileSystem()
out = fs.open_output_stream(sys.argv[2])
out.write(b"new" * (1 << 20))
out.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_write(kind: str, path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, kind, str(path)],
        cwd=Path(__file__).parents[3],
        capture_output=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_write_killed_midway_leaves_the_old_file_whole(tmp_path):
    plain, atomic = tmp_path / "plain.json", tmp_path / "atomic.json"
    for path in (plain, atomic):
        path.write_text('{"trials": 2}')
    _killed_write("plain", plain)
    _killed_write("atomic", atomic)
    # the local filesystem Tune uses by default truncated the file before writing it
    assert plain.read_bytes() != b'{"trials": 2}'
    with pytest.raises(ValueError):
        json.loads(plain.read_bytes())
    assert json.loads(atomic.read_bytes()) == {"trials": 2}
    # the kill left its temporary file; a resume deletes it, and only it
    (partial,) = [p for p in tmp_path.iterdir() if p.name.startswith(".atomic.json.tmp-")]
    assert partial.stat().st_size == 3 << 20
    (tmp_path / ".keep.tmp-notours").write_text("")
    assert storage.remove_partial_files(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".keep.tmp-notours",
        "atomic.json",
        "plain.json",
    ]


def test_copied_folders_arrive_whole_and_replace_what_was_there(tmp_path):
    source = tmp_path / "staging"
    (source / "trial" / "checkpoint_000001").mkdir(parents=True)
    (source / "experiment_state-1.json").write_text('{"a": 1}')
    weights = os.urandom(3 << 20)  # larger than one copy chunk
    (source / "trial" / "checkpoint_000001" / "model.safetensors").write_bytes(weights)
    dest = tmp_path / "runs" / "sweep"
    fs = storage.filesystem(str(dest))
    pafs.copy_files(str(source), str(dest), destination_filesystem=fs)
    (source / "experiment_state-1.json").write_text('{"a": 2}')
    pafs.copy_files(str(source), str(dest), destination_filesystem=fs)

    assert json.loads((dest / "experiment_state-1.json").read_text()) == {"a": 2}
    assert (dest / "trial" / "checkpoint_000001" / "model.safetensors").read_bytes() == weights
    # no temporary file is left beside them
    assert sorted(p.name for p in dest.rglob("*")) == [
        "checkpoint_000001",
        "experiment_state-1.json",
        "model.safetensors",
        "trial",
    ]
    fs.copy_file(str(dest / "experiment_state-1.json"), str(dest / "copy.json"))
    assert (dest / "copy.json").read_text() == '{"a": 2}'


def test_the_filesystem_travels_to_trials_and_counts_as_local(tmp_path):
    fs = storage.filesystem(str(tmp_path))
    assert pickle.loads(pickle.dumps(fs)) == fs  # Ray pickles it into every trial
    assert storage.is_local(fs) and storage.is_local(pafs.LocalFileSystem())
    assert not storage.is_local(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()))
    assert storage.filesystem("s3://bucket/runs") is None  # Tune picks a URI's own


def _experiment(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "experiment_state-2026-12-06_01-00-00.json").write_text(
        json.dumps({"trial_data": [], "runner_data": {}})
    )
    (folder / "basic-variant-state-2026-12-06_01-00-00.json").write_bytes(
        pickle.dumps({"_total_samples": 4})
    )
    return folder


def test_whole_state_files_pass(tmp_path):
    storage.check_state(str(_experiment(tmp_path / "sweep")))


@pytest.mark.parametrize(
    "name",
    [
        "experiment_state-2026-12-06_01-00-00.json",
        "basic-variant-state-2026-12-06_01-00-00.json",
    ],
)
def test_a_state_file_cut_short_is_refused_by_name(tmp_path, name):
    experiment = _experiment(tmp_path / "sweep")
    data = (experiment / name).read_bytes()
    (experiment / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        storage.check_state(str(experiment))
    assert str(experiment / name) in str(err.value)
    assert "new run.id" in str(err.value)


def test_only_the_newest_state_file_counts(tmp_path):
    experiment = _experiment(tmp_path / "sweep")
    # an older session's file, cut short: Tune reads the newest name only
    (experiment / "experiment_state-2026-12-05_01-00-00.json").write_text('{"trial_da')
    storage.check_state(str(experiment))
    storage.check_state("s3://bucket/runs/sweep")  # remote state is not read here


def test_deleting_a_checkpoint_that_is_gone_is_one_note_not_an_error_traceback(tmp_path):
    import logging

    from ray.train._internal.storage import _delete_fs_path

    controller = logging.getLogger("ray.tune.execution.tune_controller")
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append
    controller.addHandler(handler)
    notes: list[str] = []
    try:
        with storage.stale_checkpoints_noted(notes.append):
            gone = str(tmp_path / "fit_trial_0" / "checkpoint_000000")
            try:  # what Tune's checkpoint manager does with a checkpoint its state still lists
                _delete_fs_path(fs=pafs.PyFileSystem(storage.LocalFiles()), fs_path=gone)
            except FileNotFoundError:
                controller.exception("Trial %s: Error handling checkpoint %s", "trial_0", gone)
            try:  # any other error while handling a checkpoint is still Tune's ERROR
                (tmp_path / "missing.json").read_text()
            except FileNotFoundError:
                controller.exception("Trial %s: Error handling checkpoint %s", "trial_1", "x")
        controller.exception("Trial %s: Error handling checkpoint %s", "trial_2", "after")
    finally:
        controller.removeHandler(handler)
    assert notes == [
        "trial_0: an old checkpoint was gone already (deleted before the sweep stopped)"
    ]
    assert [record.args[0] for record in logged] == ["trial_1", "trial_2"]
