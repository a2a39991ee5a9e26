"""The continual flow (``sennflow continual``) on split digits, over real Ray learner actors.

One stream (5 tasks x 2 classes) met by several methods at once, each its own actor, plus the
federated continual setting (3 learner actors, own streams, prototypes merged after each task).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.continual.learners import LearnerConfig, NCMLearner
from components.continual.scenarios import class_incremental
from components.data.reader import read_split
from flows.continual import ContinualOptions, continual
from sennflow.cli import main

pytestmark = [pytest.mark.prefect, pytest.mark.ray, pytest.mark.slow]


def overrides(tmp_path, *extra: str) -> list[str]:
    return [f"run.root={tmp_path / 'runs'}", f"run.cache_dir={tmp_path / 'cache'}", *extra]


@pytest.fixture(scope="module")
def run(prefect_harness, ray_session, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("continual")
    result = continual(
        overrides=overrides(tmp_path),
        options=ContinualOptions(federated_clients=3),  # every method
    )
    return result, json.loads((Path(result.run_dir) / "continual.json").read_text())


def metrics_by_hand(R: np.ndarray, baseline: list[float]) -> dict:
    """The continual metrics of the accuracy matrix ``R`` (``R[i][j]``: accuracy on task ``j``
    after learning tasks ``0..i``), written out from the papers' definitions: average accuracy
    and BWT/FWT (Lopez-Paz & Ranzato 2017), average incremental accuracy (Rebuffi et al. 2017),
    max-based forgetting (Chaudhry et al. 2018)."""
    T = len(R)
    earlier = range(T - 1)
    return {
        "num_tasks": T,
        "average_accuracy": sum(R[T - 1][j] for j in range(T)) / T,
        "average_incremental_accuracy": sum(
            sum(R[i][j] for j in range(i + 1)) / (i + 1) for i in range(T)
        )
        / T,
        "backward_transfer": sum(R[T - 1][j] - R[j][j] for j in earlier) / (T - 1),
        "forgetting": sum(max(R[i][j] for i in earlier) - R[T - 1][j] for j in earlier) / (T - 1),
        "forward_transfer": sum(R[j - 1][j] - baseline[j] for j in range(1, T)) / (T - 1),
    }


def test_every_method_meets_the_stream_and_its_metrics_come_from_R(run, digits_dataset):
    result, data = run
    _, y = read_split(digits_dataset, "train")
    assert data["tasks"] == [list(t.classes) for t in class_incremental(y, 5, seed=0)]
    for method, outcome in data["methods"].items():
        R = np.array(outcome["R"])
        assert R.shape == (5, 5), method
        assert outcome["summary"] == pytest.approx(metrics_by_hand(R, outcome["baseline"]))
    for method in ("finetune", "joint"):
        outcome = data["methods"][method]
        assert len(outcome["lrs"]) == outcome["records"][-1]["steps"]
    s = {m: o["summary"] for m, o in data["methods"].items()}
    assert s["finetune"]["forgetting"] >= 0.8
    assert s["joint"]["average_accuracy"] >= 0.95
    for method in ("ncm", "prd", "napa_vq", "protocl"):  # the floors, no stored samples
        assert s[method]["average_accuracy"] >= 0.80, method
        assert s[method]["forgetting"] <= 0.20, method
    assert result.headline["joint_average_accuracy"] == s["joint"]["average_accuracy"]


def test_infinite_schedule_never_rewarms(run):
    _, data = run
    lrs = np.array(data["methods"]["finetune"]["lrs"])
    schedule = data["methods"]["finetune"]["config"]
    warm = schedule["warmup_steps"] + schedule["cooldown_steps"]
    assert lrs[:warm].max() == pytest.approx(schedule["max_lr"], rel=0.05)
    assert lrs[warm:].max() <= schedule["const_lr"] + 1e-12  # later tasks start at const_lr


def test_federated_continual_merges_to_the_centralised_class_means(run, digits_dataset):
    _, data = run
    fed = data["federated"]
    merged = np.array(fed["R_merged"])
    assert merged.shape == (5, 5)
    # after the first task the merged model already knows classes other clients brought
    assert (merged[0] > 0).sum() > 1
    # after the last task: count-weighted merging equals one NCM learner over all the data
    x, y = read_split(digits_dataset, "train")
    x_test, y_test = read_split(digits_dataset, "test")
    config = LearnerConfig(**fed["config"])
    central = NCMLearner(config, train_embedding="none")
    for task in class_incremental(y, 5, seed=0):
        central.learn_task(x[task.indices], y[task.indices], task.classes)
    central_acc = (central.predict(x_test) == y_test).mean()
    merged_acc = np.average(
        merged[-1], weights=[np.isin(y_test, t).sum() for t in fed["reference_tasks"]]
    )
    assert merged_acc == pytest.approx(central_acc, abs=1 / len(y_test))
    assert len(fed["bytes_per_merge"]) == 5 and min(fed["bytes_per_merge"]) > 0


def test_report_shows_heat_maps_and_metric_table(run):
    result, _ = run
    run_dir = Path(result.run_dir)
    html = (run_dir / "report.html").read_text()
    assert "Continual learning" in html and "forgetting" in html
    assert (run_dir / "figures" / "continual_accuracy_matrix.png").is_file()
    assert (run_dir / "figures" / "continual_federated_matrix.png").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("continual.methods=[ncm,bogus]", "continual.methods"),
        ("continual.num_tasks=3", "num_tasks=3 does not divide"),
        ("+continual.method_params.prd.x=1", "continual.method_params"),
        ("continual.federated_clients=-1", "federated_clients"),
        ("continual.learner.epochs=1", "raise continual.learner.epochs"),
    ],
)
def test_bad_continual_config_exits_2_naming_the_key(tmp_path, capsys, override, message):
    assert main(["continual", *overrides(tmp_path, override)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
