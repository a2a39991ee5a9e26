"""Results of work that runs on Ray workers land on remote storage the driver reads back.

``sennflow sweep`` runs with ``ray.storage_path=s3://...`` against a real S3 API server on
loopback: the dataset is staged in the bucket for the workers, the Tune experiment and its trial
checkpoints and the retrained model's Ray Train checkpoints are written there, and the driver
reads them back into the local run folder. Nothing is written to a local path named after the
URI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]

STORE = "s3://sennflow/store"


def bucket_files(uri: str, env: dict) -> list[str]:
    os.environ.update(env)  # pyarrow reads the endpoint and credentials from the environment
    fs, path = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return [i.path[len(path) + 1 :] for i in infos if i.type == pafs.FileType.File]


def test_a_sweep_keeps_its_results_on_s3_and_the_driver_reads_them(
    s3_server, prefect_harness, tmp_path, monkeypatch
):
    from prefect.settings import PREFECT_API_URL

    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    command = [
        str(Path(sys.executable).with_name("sennflow")), "sweep", "search=random",
        "search.num_samples=2", "experiment=tiny", "model=mlp", "ray.num_cpus=2",
        f"ray.storage_path={STORE}", f"run.root={tmp_path / 'runs'}", "run.id=remote",
    ]  # fmt: skip
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=480
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    files = bucket_files(STORE, s3_server)
    staged = [f for f in files if f.startswith("datasets/digits-")]
    assert any(f.endswith("/meta.json") for f in staged) and any(
        f.endswith("/_STAGED") for f in staged
    )
    trial_checkpoints = [f for f in files if f.startswith("sweep/remote/sweep/fit_trial_")]
    trials = {f.split("/")[3] for f in trial_checkpoints if "/checkpoint_" in f}
    assert len(trials) == 2  # every trial's checkpoints are in the bucket
    retrained = [f for f in files if f.startswith("sweep/remote/train/checkpoint_")]
    assert any(f.endswith("model.safetensors") for f in retrained)

    run_dir = tmp_path / "runs" / "sweep" / "remote"
    sweep = json.loads((run_dir / "search.json").read_text())
    assert sweep["experiment_path"] == f"{STORE}/sweep/remote/sweep"
    # Tune's rows, read from the bucket: the best trial's numbers are those of its best epoch
    best = min((h for t in sweep["trials"] for h in t["history"]), key=lambda h: h["val_loss"])
    assert (sweep["best_metrics"]["epoch"], sweep["best_metrics"]["val_loss"]) == (
        best["epoch"],
        best["val_loss"],
    )
    assert (run_dir / "checkpoints" / "best" / "model.safetensors").is_file()  # read back
    assert (run_dir / "report.html").is_file()
    assert not (tmp_path / "s3:").exists()  # no local folder named after the URI
