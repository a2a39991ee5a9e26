"""``sennflow runs``: every run folder under a root with its state, headline and resume command;
a killed run told from a running one; an unreadable status does not hide the other runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from flows.run_folder import start_status, update_status
from flows.run_listing import list_runs
from sennflow.cli import main


def _run(root, flow: str, run_id: str, started: str, **status) -> object:
    run_dir = root / flow / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 0\n")
    if status:
        start_status(run_dir, flow, run_root=root)  # this process, alive
        update_status(run_dir, started=started, **status)
    return run_dir


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "runs"
    headline = {"test_accuracy": 0.98141, "test_nll": 0.1, "best_epoch": 7, "extra": 1.0}
    _run(root, "pipeline", "done", "2026-12-01T10:00", state="completed", headline=headline)
    _run(root, "sweep", "stopped", "2026-12-02T10:00", state="interrupted")
    _run(root, "pipeline", "killed", "2026-12-03T10:00", pid=_dead_pid(), pid_started=0)
    _run(root, "pipeline", "alive", "2026-12-04T10:00", last_completed_epoch=3)
    _run(root, "prune", "elsewhere", "2026-12-05T10:00", host="another-host", pid=1)
    broken = _run(root, "pipeline", "broken", "2026-12-06T10:00", state="failed")
    (broken / "status.json").write_text('{"state": "runn')  # cut short
    old = _run(root, "federated", "old", "")  # from before runs kept a status
    (old / "report.html").write_text("<html></html>")
    (root / "pipeline" / ".tmp-host-1-ab").mkdir()  # no config.yaml: no run
    (root / "sweep" / "history.parquet").write_bytes(b"")
    return root


def test_runs_are_listed_oldest_first_with_what_became_of_them(root):
    rows = list_runs(root)
    assert [(row.run_id, row.state) for row in rows] == [
        ("old", "completed"),  # no status: started unknown, first
        ("broken", "unreadable"),
        ("done", "completed"),
        ("stopped", "interrupted"),
        ("killed", "killed"),  # left running by a process gone from this host
        ("alive", "running"),
        ("elsewhere", "running"),  # another host's process cannot be checked from here
    ]
    by_id = {row.run_id: row for row in rows}
    assert by_id["done"].headline["test_accuracy"] == 0.98141 and by_id["done"].resume is None
    assert by_id["stopped"].resume == f"sennflow sweep --resume run.id=stopped run.root={root}"
    assert by_id["killed"].resume == f"sennflow run --resume run.id=killed run.root={root}"
    assert by_id["alive"].resume is None and by_id["alive"].epoch == 3
    assert "status.json: cannot read it as JSON" in by_id["broken"].problem


def test_the_command_prints_the_table_and_how_to_resume_the_stopped_runs(root, capsys):
    assert main(["runs", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()  # one per run, whole whatever the terminal's width
    assert lines[0].split() == ["started", "(UTC)", "run", "state", "epoch", "what", "headline"]
    shown = [re.search(r"(\S+/\S+) +(\S+)", line).groups() for line in lines[1:8]]
    assert shown == [
        ("federated/old", "completed"),
        ("pipeline/broken", "unreadable"),
        ("pipeline/done", "completed"),
        ("sweep/stopped", "interrupted"),
        ("pipeline/killed", "killed"),
        ("pipeline/alive", "running"),
        ("prune/elsewhere", "running"),
    ]
    assert lines[3].startswith("2026-12-01 10:00  pipeline/done")
    assert lines[3].endswith("test_accuracy 0.9814  test_nll 0.1000  best_epoch 7")
    resume = out.split("to resume:\n")[1].split()
    assert " ".join(resume) == (
        f"sennflow sweep --resume run.id=stopped run.root={root} "
        f"sennflow run --resume run.id=killed run.root={root}"
    )
    assert "pipeline/broken: " in out and "cannot read it as JSON" in out


def test_each_run_says_what_it_ran_from_its_config(tmp_path, capsys):
    root = tmp_path / "runs"
    birds = "data: {source: image_folder, path: /data/birds/}\n"
    trunk = "model: {name: protopnet, params: {backbone: resnet18}}\n"
    configs = {
        ("pipeline", "a"): birds + trunk,
        ("sweep", "b"): "data: {source: digits}\nmodel: {name: mlp}\nsearch: {method: asha}\n",
        (
            "federated",
            "c",
        ): "data: {source: csv, path: s3://bucket/loans.csv}\nmodel: {name: mlp}\n",
        ("predict", "d"): birds + trunk,
        ("pipeline", "e"): "data: [not, a, mapping]\n",
        ("pipeline", "f"): "data: {source: digits\n",  # cut short
    }
    for (flow, run_id), config in configs.items():
        run_dir = _run(root, flow, run_id, "2026-12-01T10:00", state="completed")
        (run_dir / "config.yaml").write_text(config)
    (root / "predict" / "d" / "meta.json").write_text('{"input": "/photos/unsorted/"}')
    what = {row.run_id: row.what for row in list_runs(root)}
    assert what == {
        "a": "protopnet/resnet18 on image_folder birds",
        "b": "asha: mlp on digits",
        "c": "on csv loans.csv",  # federated trains its own networks: no model named
        "d": "protopnet/resnet18 on unsorted",  # the files it predicted
        "e": None,
        "f": None,
    }
    assert main(["runs", str(root), "--flow", "sweep"]) == 0
    assert "sweep/b  completed         asha: mlp on digits" in capsys.readouterr().out


def test_runs_filter_by_flow_and_state(root, capsys):
    def shown(*args):
        assert main(["runs", str(root), *args]) == 0
        lines = capsys.readouterr().out.split("to resume:")[0].splitlines()
        return [re.search(r"\S+/\S+", line).group(0) for line in lines[1:]]

    assert shown("--state", "killed") == ["pipeline/killed"]
    assert shown("--flow", "sweep") == ["sweep/stopped"]
    assert shown("--flow", "pipeline", "--state", "running") == ["pipeline/alive"]
    assert main(["runs", str(root), "--flow", "pipelin"]) == 0
    assert capsys.readouterr().out == (
        f"no such runs under {root} (flows there: federated, pipeline, prune, sweep)\n"
    )


def test_a_root_that_is_no_folder_is_one_error_and_exit_2(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"sennflow: error: {tmp_path / 'nope'}: no such folder of runs " + (
        "(the run.root runs were written to)"
    )
    (tmp_path / "file").write_text("")
    assert main(["runs", str(tmp_path / "file")]) == 2
    assert f"{tmp_path / 'file'}: is a file, not a folder of runs" in capsys.readouterr().err


def test_one_flows_folder_or_one_run_folder_lists_its_runs(root):
    rows = list_runs(root / "pipeline")
    assert [row.run_id for row in rows] == ["broken", "done", "killed", "alive"]  # oldest first
    assert {row.flow for row in rows} == {"pipeline"}
    (row,) = list_runs(root / "sweep" / "stopped")
    assert (row.flow, row.run_id, row.state) == ("sweep", "stopped", "interrupted")


def test_a_hand_edited_status_of_wrong_types_is_listed_without_them(tmp_path, capsys):
    root = tmp_path / "runs"
    odd = {"last_completed_epoch": "x", "headline": [1], "resume": 3}
    run_dir = _run(root, "pipeline", "odd", "", state="interrupted", **odd)
    update_status(run_dir, started=5)
    (row,) = list_runs(root)
    assert (row.state, row.started, row.epoch, row.headline, row.resume) == (
        "interrupted",
        None,
        None,
        {},
        None,
    )
    assert main(["runs", str(root)]) == 0
    assert "pipeline/odd  interrupted" in capsys.readouterr().out


def test_an_empty_root_says_it_has_no_runs(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no runs under {tmp_path}\n"


def test_the_listing_writes_nothing(root):
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    main(["runs", str(root)])
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert json.loads((root / "sweep" / "stopped" / "status.json").read_text())["state"] == (
        "interrupted"
    )
