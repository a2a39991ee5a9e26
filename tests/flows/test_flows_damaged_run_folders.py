"""A run folder whose files were cut short or edited by hand: ``--resume`` and ``sennflow explain``
exit 2 naming the file, and leave the folder as it was (these were JSON and YAML tracebacks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.config import ConfigError, compose, to_yaml
from flows.run_folder import read_run_json
from sennflow.cli import main

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


def _failed_run(root: Path, run_id: str = "r1") -> Path:
    """A pipeline run folder as a failed run leaves it (no training needed to resume-check)."""
    run_dir = root / "pipeline" / run_id
    (run_dir / "checkpoints" / "best").mkdir(parents=True)
    cfg = compose(["experiment=tiny", f"run.root={root}", f"run.id={run_id}"])
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    (run_dir / "status.json").write_text(json.dumps({"state": "failed", "flow": "pipeline"}))
    (run_dir / "meta.json").write_text(json.dumps({"git_sha": "abc"}))
    (run_dir / "metrics.json").write_text(json.dumps({"data": {}}))
    (run_dir / "checkpoints" / "best" / "model.safetensors").write_bytes(b"")
    return run_dir


def _snapshot(run_dir: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("status.json", "{cut", "status.json: cannot read it as JSON (Expecting property name"),
        ("status.json", "[1, 2]", "status.json: holds a JSON list, not an object"),
        ("config.yaml", "seed: [", "config.yaml: while parsing a flow node"),
        ("meta.json", None, "its meta.json (provenance) is missing"),
        ("meta.json", "{cut", "meta.json: cannot read it as JSON"),
    ],
)
def test_resuming_a_damaged_run_folder_exits_2_naming_the_file(
    tmp_path, name, content, message, capsys
):
    run_dir = _failed_run(tmp_path / "runs")
    if content is None:
        (run_dir / name).unlink()
    else:
        (run_dir / name).write_text(content)
    before = _snapshot(run_dir)
    args = ["run", "--resume", f"run.root={tmp_path / 'runs'}", "run.id=r1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert _snapshot(run_dir) == before  # nothing rewritten, not even status.json


def test_re_explaining_a_run_with_damaged_metrics_exits_2_naming_the_file(tmp_path, capsys):
    run_dir = _failed_run(tmp_path / "runs")
    (run_dir / "metrics.json").write_text('{"data": ')
    before = _snapshot(run_dir)
    assert main(["explain", str(run_dir), f"run.root={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir / 'metrics.json'}: cannot read it as JSON" in err, err
    assert _snapshot(run_dir) == before and not (tmp_path / "out").exists()


def test_read_run_json_tells_a_missing_file_from_a_damaged_one(tmp_path):
    assert read_run_json(tmp_path / "none.json") is None
    (tmp_path / "bytes.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match="bytes.json: cannot read it as JSON"):
        read_run_json(tmp_path / "bytes.json")
