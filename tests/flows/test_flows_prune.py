"""``sennflow prune method=imp``: a dense round and one pruning round, each a real Ray Train fit,
recorded in the run folder and the report; ``--resume`` with another setup exits 2 naming the key.
(Resuming at the next round is tested in-process: tests/components/pruning.)"""

from __future__ import annotations

import json

import pytest

from flows.run_folder import update_status
from sennflow.cli import main

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


def test_rounds_on_a_gpu_the_local_ray_lacks_are_refused_before_the_run_folder(
    prefect_harness, ray_session, tmp_path, digits_dataset
):
    from flows.config import ConfigError
    from flows.prune import prune

    overrides = ["train.use_gpu=true", f"run.root={tmp_path / 'runs'}"]
    with pytest.raises(ConfigError, match="train.use_gpu=true with train.num_workers=1 needs 1"):
        prune(overrides=[*overrides, f"run.cache_dir={digits_dataset.parent}"])
    assert not (tmp_path / "runs").exists()


def test_prune_command_runs_two_rounds_refuses_a_changed_resume_and_resumes_by_id(
    prefect_harness, ray_session, tmp_path, capsys, digits_dataset
):
    args = [
        "method=imp",
        "rounds=1",
        "rate=0.5",
        "prune.control=false",
        "model.tiny=true",
        "train.epochs=1",
        "run.id=lottery",
        f"run.root={tmp_path / 'runs'}",
        f"run.cache_dir={digits_dataset.parent}",  # the session's ingested digits
    ]
    assert main(["prune", *args]) == 0
    run_dir = tmp_path / "runs" / "prune" / "lottery"
    rounds = json.loads((run_dir / "prune.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["remaining"] < 0.6
    for tag in ("round-0/ticket", "round-1/ticket"):
        assert (run_dir / "prune" / tag / "checkpoints" / "best" / "model.safetensors").is_file()
    assert (run_dir / "figures" / "lottery_accuracy.png").is_file()
    assert "Lottery tickets" in (run_dir / "report.html").read_text()

    update_status(run_dir, state="interrupted")  # as a killed run leaves it
    capsys.readouterr()
    assert main(["prune", "--resume", *args[:2], "rate=0.3", *args[3:]]) == 2
    assert "prune.rate (saved 0.5, now 0.3) would change" in capsys.readouterr().err
    # its config.yaml is the config: the folder and one more round are all a resume names
    assert main(["prune", "--resume", *args[6:8], "rounds=2"]) == 0
    rounds = json.loads((run_dir / "prune.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2] and rounds[2]["remaining"] < 0.3
