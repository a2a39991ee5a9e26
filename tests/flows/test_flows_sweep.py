"""The sweep flow (``sennflow sweep``) per hyperparameter method, on digits with tiny budgets
(the architecture searches are in test_flows_sweep_nas.py).

Each test asserts what its method must do; the flow runs in-process under Prefect's test harness
with the session's Ray, except the CLI tests, which run the console script as a user would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from components.report.search_figures import short_trial_name
from components.search.trial_rows import read_rows
from flows.sweep import SweepOptions, sweep
from sennflow.cli import main

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


def search_json(result) -> dict:
    return json.loads((Path(result.run_dir) / "search.json").read_text())


def trial_results(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]


def test_asha_stops_trials_early_then_retrains_evaluates_and_reports(
    prefect_harness, ray_session, mlflow_server, tmp_path, tiny_run
):
    result = sweep(
        overrides=tiny_run(
            "model=mlp",
            "train.epochs=4",
            "search.reduction_factor=2",
            f"tracking.experiment=sweep-{tmp_path.name}",
        ),
        options=SweepOptions(
            method="asha", num_samples=6, tracking="mlflow", tracking_uri=mlflow_server[0]
        ),
    )
    trials = search_json(result)["trials"]
    assert len(trials) == 6
    stopped = [t for t in trials if t["status"] == "stopped early"]
    assert stopped and all(t["epochs"] < 4 for t in stopped)
    assert max(t["epochs"] for t in trials) == 4
    assert all(len(t["history"]) == t["epochs"] for t in trials)
    # 6 trials, 2 at a time: a finished trial's worker process runs the next (actor reuse)
    experiment = Path(search_json(result)["experiment_path"])
    processes = {trial_results(d)[0]["pid"] for d in experiment.glob("fit_trial_*")}
    assert len(processes) < 6
    run_dir = Path(result.run_dir)
    assert (run_dir / "checkpoints" / "best" / "model.safetensors").is_file()
    finished = [t for t in trials if t["val_loss"] is not None]
    assert result.best_config == min(finished, key=lambda t: t["val_loss"])["config"]
    html = (run_dir / "report.html").read_text()
    shown = {f"<td>{short_trial_name(t['trial'])}" for t in trials}  # trial 0 ... trial 5
    assert "Search" in html and len(shown) == 6 and all(name in html for name in shown)
    assert (run_dir / "figures" / "search_trial_curves.png").is_file()
    assert result.headline["trials"] == 6
    accuracy = retrained_test_accuracy(run_dir, tmp_path / "cache")
    assert result.headline["test_accuracy"] == accuracy and accuracy >= 0.4  # measured 0.67
    assert_tracked_in_mlflow(mlflow_server[0], f"sweep-{tmp_path.name}", result, trials)


def retrained_test_accuracy(run_dir: Path, cache: Path) -> float:
    """The accuracy of the retrained best checkpoint on the test split, computed here."""
    import torch

    from components.data.reader import read_split
    from components.training.checkpoint import load_model

    (dataset,) = cache.glob("digits-*")
    x, y = read_split(dataset, "test")
    model, _ = load_model(run_dir / "checkpoints" / "best")
    with torch.no_grad():
        predicted = model.eval()(torch.as_tensor(x)).logits.argmax(1).numpy()
    return float(np.mean(predicted == y))


def assert_tracked_in_mlflow(url: str, experiment: str, result, trials: list[dict]) -> None:
    """The sweep is one MLflow run with one nested run per trial and its epochs as steps."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["sennflow.run_id"] == Path(result.run_dir).name
    assert parent.data.metrics["test_accuracy"] == result.headline["test_accuracy"]
    children = {r.info.run_name: r for r in runs if r.info.run_id != parent.info.run_id}
    assert set(children) == {t["trial"] for t in trials}
    for trial in trials:
        child = children[trial["trial"]]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        curve = client.get_metric_history(child.info.run_id, "val_loss")
        assert sorted(m.step for m in curve) == [row["epoch"] for row in trial["history"]]


def test_pbt_records_that_a_trial_copied_a_better_trials_weights(
    prefect_harness, ray_session, tiny_run
):
    result = sweep(
        overrides=tiny_run(
            "search=pbt",
            "model=mlp",
            "train.epochs=3",
            "search.num_samples=2",
            "search.max_concurrent=2",
            "search.perturbation_interval=1",
            "search.retrain=false",
        )
    )
    trials = search_json(result)["trials"]
    assert any(t["exploited"] for t in trials)
    experiment = Path(search_json(result)["experiment_path"])
    donors = {
        row["exploited_from"]
        for trial in trials
        for row in read_rows(experiment / trial["trial"])
        if row.get("exploited_from")
    }
    assert donors  # each is the id of another trial of this sweep
    assert all(any(donor in t["trial"] for t in trials) for donor in donors)


def test_stn_lowers_a_bad_dropout_start_and_beats_the_fixed_run(
    prefect_harness, ray_session, tmp_path, tiny_run
):
    from components.data.reader import read_split
    from components.search.stn import STNConfig, train_fixed

    settings = {
        "epochs": 12,
        "warmup_epochs": 1,
        "hyper_lr": 0.03,
        "hidden_sizes": [32],
        "seed": 0,
    }
    result = sweep(
        overrides=tiny_run(
            "search=stn",
            "search.num_samples=1",
            "search.space.stn.dropout.values=[0.9]",
            *(f"search.stn.{k}={v}" for k, v in settings.items()),
        )
    )
    run_dir = Path(result.run_dir)
    (schedule,) = json.loads((run_dir / "stn_schedules.json").read_text()).values()
    rates = [row["dropout"] for row in schedule]
    assert len(rates) == 12 and rates[0] == pytest.approx(0.9, abs=0.01) and rates[-1] < 0.5

    # The schedule is reported to Tune every epoch, and saved with the checkpoint.
    experiment = Path(search_json(result)["experiment_path"])
    (trial_dir,) = experiment.glob("stn_trial_*")
    reported = [row["dropout"] for row in trial_results(trial_dir)]
    assert reported == pytest.approx(rates)
    assert list(trial_dir.glob("checkpoint_*/schedule.json"))

    dataset = next((tmp_path / "cache").iterdir())
    x, y = read_split(dataset, "train")
    vx, vy = read_split(dataset, "val")
    config = STNConfig(**{**settings, "hidden_sizes": (32,), "dropout": 0.9})
    fixed = train_fixed(x, y, vx, vy, num_classes=10, hyperparameters={}, config=config)
    trial = search_json(result)["trials"][0]
    assert trial["val_loss"] < fixed["history"][-1]["val_loss"]

    # The retrained model (mlp by default) replays the learned dropout epoch by epoch.
    spec = json.loads((run_dir / "checkpoints" / "best" / "model.json").read_text())
    assert spec["name"] == "mlp"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary = metrics["search"]
    assert [row["dropout"] for row in summary["replayed_schedule"]] == pytest.approx(rates)
    assert metrics["train"]["wall_s"] > 0  # the retrain's, for a later sennflow explain
    assert (run_dir / "figures" / "search_replayed_schedule.png").is_file()
    assert (run_dir / "figures" / "search_schedules.png").is_file()


def _remove_leftover_placement_groups() -> list[str]:
    """Remove the placement groups earlier tests left in this worker's Ray, and name them.

    Once in four fresh-clone runs (session 38), a Train placement group of an earlier sweep in
    the shared 2-CPU test Ray was never freed, and this test's two workers waited for a CPU
    until the 600 s timeout. Within one sweep the leak would still fail this test.
    """
    from ray._raylet import PlacementGroupID
    from ray.util import placement_group_table, remove_placement_group
    from ray.util.placement_group import PlacementGroup

    left = [k for k, v in placement_group_table().items() if v["state"] != "REMOVED"]
    for key in left:
        remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(key))))
    return left


def _train_controllers() -> dict[str, str]:
    """Each Ray Train controller of the test Ray by actor id, with how it died ('' if alive)."""
    import ray
    from ray.util.state import list_actors

    # this worker's Ray, not another one on the machine (pytest-xdist's other worker)
    address = ray.get_runtime_context().gcs_address
    return {
        actor.actor_id: (actor.death_cause or {})
        .get("actor_died_error_context", {})
        .get("error_message", "")
        for actor in list_actors(
            address,
            filters=[("class_name", "=", "TrainController")],
            detail=True,
            limit=10_000,
        )
    }


def test_trials_with_two_workers_each_train_through_ray_train(
    prefect_harness, ray_session, tiny_run
):
    if left := _remove_leftover_placement_groups():
        warnings.warn(f"removed placement groups earlier tests left: {left}", stacklevel=1)
    before = _train_controllers()
    result = sweep(
        overrides=tiny_run(
            "model=mlp",
            "train.epochs=3",
            "train.num_workers=2",
            "search.num_samples=3",
            "search.max_concurrent=1",
            "search.grace_period=1",
            "search.retrain=false",
        )
    )
    outcome = search_json(result)
    assert [t["status"] for t in outcome["trials"]].count("failed") == 0
    best = Path(outcome["best_checkpoint"])
    assert (best / "model.safetensors").is_file()
    assert best.parent.parts[-2:] == ("ray", "train")  # a checkpoint of the trial's TorchTrainer
    assert Path(outcome["experiment_path"]) in best.parents
    trial_dirs = sorted(Path(outcome["experiment_path"]).glob("ray_train_trial_*"))
    epochs = [[row["epoch"] for row in trial_results(d)] for d in trial_dirs]
    # ASHA stopped the second trial after its first epoch (worse than the first at that rung).
    assert epochs == [[1, 2, 3], [1], [1, 2, 3]], epochs

    # The final epoch is reported once the trainer has returned: ASHA stops a finished trial
    # on it, and the trial's controller has already freed its workers' placement group (killed
    # with the trial's process, it left that to Ray Train's cleaner, which sometimes never did,
    # and a later trial waited for CPUs forever). The stopped trial's trainer dies with its
    # process, which Tune does not reuse: reused, it trained on and could block the next trial.
    ended = [v for k, v in _train_controllers().items() if k not in before]
    out_of_scope = "The actor is dead because all references to the actor were removed"
    assert len(ended) == 3 and sum(v.startswith(out_of_scope) for v in ended) == 2, ended


def test_sweep_options_become_hydra_overrides():
    options = SweepOptions(method="pbt", num_samples=4, model="mlp", epochs=3, num_workers=1)
    assert options.to_overrides() == [
        "search=pbt",
        "search.num_samples=4",
        "model=mlp",
        "train.epochs=3",
        "train.num_workers=1",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search=nope"], "search=nope: there is no conf/search/nope.yaml"),
        (["search.num_samples=0"], "search.num_samples"),
        (["+search.space.train.lrr={type:uniform,low:0,high:1}"], "train.lrr"),
        (["+search.space.train.lr={type:gauss}"], "type 'gauss'"),
        (["search.space.train.lr={type:uniform,low:0.1,high:0.01}"], "needs low < high"),
        (["search.space.train.lr=0.01"], "to fix it for every trial, set train.lr=0.01"),
        (
            ["search.grace_period=20", "train.epochs=3"],
            "search.grace_period=20 is more than a trial's budget, train.epochs=3",
        ),
        (["search=optuna", "search.objectives=val_accuracy"], "takes two different metrics"),
        (
            ["search.space.train.lr={type:choice,values:[0.1,0.01]}"],
            "to replace search.space.train.lr, delete it first: ~search.space.train.lr",
        ),
        (
            ["+search.space.train.batch_size={type:choice,values:[0,32]}"],
            "search space 'train.batch_size' can draw 0, refused: invalid training config",
        ),
        (
            ["+search.space.model.num_prototypes={type:randint,low:0,high:4}"],
            "'model.num_prototypes' can draw 0, refused: cannot build model 'proto_ae'",
        ),
        (["search=stn", "search.stn.dropout=0.99"], "dropout must lie in"),
        (["search=darts", "search.darts.order=3"], "order must be 1 or 2"),
        (["model=darts_net", "+model.params.genotype=/no/such/genotype.json"], "genotype"),
        (["--resume"], "run.id"),
        (["train.num_workers=2", "ray.storage_path=s3://b/x"], "filesystem every node mounts"),
        (["search.resources_per_trial={cpu:1,gpu:1.5}"], "search.resources_per_trial.gpu must"),
        (["search=pbt", "train.num_workers=2"], "search.method=pbt needs train.num_workers=1"),
        (
            ["train.num_workers=2", "search.resources_per_trial={cpu:1,gpu:0.5}"],
            "with train.num_workers=2 each trial is a Ray Train group",
        ),
    ],
)
def test_bad_sweep_input_exits_2_naming_the_key(args, message, capsys, tmp_path):
    assert main(["sweep", *args, f"run.root={tmp_path}"]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.ray
@pytest.mark.prefect
def test_a_trial_the_cluster_cannot_hold_is_refused_before_the_run_folder_exists(
    prefect_harness, ray_session, tmp_path, tiny_run, capsys
):
    args = tiny_run("search.resources_per_trial={cpu:1,gpu:0.5}")
    assert main(["sweep", *args]) == 2
    assert "a trial asks for 0.5 GPU" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_reused_run_id_without_resume_is_refused_before_anything_is_written(
    prefect_harness, tmp_path, tiny_run
):
    from flows.config import ConfigError

    storage = tmp_path / "storage"
    # An experiment left under this run.id in ray.storage_path (its run folder is gone):
    # tuner.pkl is what Tune's can_restore looks for.
    experiment = storage / "sweep" / "nightly" / "sweep"
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")
    args = tiny_run("run.id=nightly", f"ray.storage_path={storage}")
    with pytest.raises(
        ConfigError, match=rf"{re.escape(str(experiment))} already holds .* --resume"
    ):
        sweep(overrides=args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["storage"]  # no run folder, no cache


def test_resuming_a_finished_sweep_is_refused_and_leaves_it_alone(
    prefect_harness, tmp_path, tiny_run
):
    from flows.config import ConfigError, to_yaml
    from flows.run_folder import update_status
    from flows.sweep import compose_sweep

    args = tiny_run("run.id=done")
    run_dir = tmp_path / "runs" / "sweep" / "done"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(compose_sweep(args)))
    (run_dir / "report.html").write_text("the finished sweep's report")
    status = update_status(run_dir, state="completed")
    with pytest.raises(ConfigError, match="already completed. Start a new sweep"):
        sweep(overrides=args, resume=True)
    assert json.loads((run_dir / "status.json").read_text()) == status
    assert (run_dir / "report.html").read_text() == "the finished sweep's report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing ingested


def _sennflow_sweep(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sennflow", "sweep", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so the test can kill the driver with every process it started
        **kwargs,
    )


def _trial_dir(experiment: Path, key: str) -> Path:
    (trial_dir,) = [d for d in experiment.glob("fit_trial_*") if key in d.name]
    return trial_dir


def _reported(experiment: Path, key: str) -> bool:
    dirs = [d for d in experiment.glob("fit_trial_*") if key in d.name]
    return (
        bool(dirs)
        and (dirs[0] / "result.json").exists()
        and bool((dirs[0] / "result.json").read_text().strip())
    )


def test_a_sweep_resumes_after_its_driver_is_killed(prefect_harness, tmp_path, tiny_run, capsys):
    from prefect.settings import PREFECT_API_URL

    # the sweeps use this session's Prefect server rather than each starting a temporary one
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    args = [
        *tiny_run("search=random", "model=mlp", "train.epochs=3"),
        # ~0.3 s epochs: trials start at once on a reused worker, and the kill below must land
        # between a trial's first and last report
        "train.batch_size=2",
        "search.num_samples=4",
        "search.max_concurrent=1",
        "search.retrain=false",
        "ray.num_cpus=2",
    ]
    proc = _sennflow_sweep(*args, env=env)  # no run.id: the sweep picks one
    deadline = time.monotonic() + 240
    # wait until one trial is done and the next one under way
    while not (found := list((tmp_path / "runs").glob("sweep/*/sweep"))) or not _reported(
        found[0], "_00001_"
    ):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (experiment,) = found
    # the resume names the sweep the first run picked, and may spell run.root another way
    args += [f"run.id={experiment.parent.name}", f"run.root={tmp_path / 'runs/../runs'}"]
    first, second = (_trial_dir(experiment, k) for k in ("_00000_", "_00001_"))
    before = trial_results(first)
    # Tune's driver copies its staged experiment folder (every trial's result.json) into the
    # run folder, file by file, whole (components.search.storage): a SIGKILL between two files
    # of one copy leaves the finished trial's rows as the copy before left them, epochs
    # short. Either way the resumed sweep must not rerun it.
    assert len(before) <= 3 and len(trial_results(second)) < 3

    # Tune's state as a killed sweep of an older sennflow could leave it (Tune copied it over
    # with truncating writes): the resume names the file instead of starting an empty search
    (state,) = experiment.glob("experiment_state-*.json")
    whole = state.read_bytes()
    state.write_bytes(whole[: len(whole) // 2])
    # the refusals run in this process: each command would spend seconds importing the flows
    assert main(["sweep", "--resume", *args]) == 2
    out = capsys.readouterr().err
    assert f"Tune's saved state {state} is unreadable" in out and "new run.id" in out
    assert state.read_bytes() == whole[: len(whole) // 2]  # nothing was run or rewritten
    assert sorted(experiment.glob("experiment_state-*.json")) == [state]
    state.write_bytes(whole)

    # a copy elsewhere cannot go on: Tune's search state would start its trials in the original
    moved = tmp_path / "moved"
    subprocess.run(["cp", "-a", tmp_path / "runs", moved], check=True)
    files = sorted(moved.rglob("*"))
    assert main(["sweep", "--resume", *args, f"run.root={moved}"]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"was started in {experiment.resolve()} and is now in {moved.resolve()}/" in said
    assert sorted(moved.rglob("*")) == files

    assert main(["sweep", "--resume", *args, "train.epochs=5"]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "with other settings: train.epochs (saved 3, now 5) would change" in said

    # the run folder's config.yaml is the config: where the sweep is, is all a resume needs
    resumed = _sennflow_sweep("--resume", *args[-2:], env=env)
    out, _ = resumed.communicate(timeout=420)
    assert resumed.returncode == 0, out[-3000:]
    trials = json.loads((experiment.parent / "search.json").read_text())["trials"]
    assert len(trials) == 4 and all(t["status"] == "done" for t in trials)
    # the finished trial was kept, not rerun: its rows are those of the first run, each epoch
    # once (the resume's copy may bring the rows the kill kept from the last one)
    after = trial_results(first)
    assert after[: len(before)] == before
    assert [row["epoch"] for row in after] == [1, 2, 3][: len(after)]
    # the sweep's own rows (components.search.trial_rows) keep every epoch of every trial,
    # the killed one's too, whatever the kill did to Tune's copy
    for trial in trials:
        assert [row["epoch"] for row in trial["history"]] == [1, 2, 3], trial["trial"]
    epochs = [row["epoch"] for row in trial_results(second)]
    assert epochs == sorted(set(epochs))  # resumed from its checkpoint, not restarted

    assert main(["sweep", "--resume", *args]) == 2
    assert "the run already completed. Start a new sweep" in " ".join(
        capsys.readouterr().err.split()
    )
