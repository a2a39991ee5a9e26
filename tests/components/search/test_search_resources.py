"""``search.resources_per_trial``: what a trial reserves from Ray, checked before any trial runs.

Packing trials on a GPU needs one (``bench/gpu_check.sh``); here the config and its refusals."""

from __future__ import annotations

import pytest

from components.search.resources import check_cluster, parse_resources, trial_resources
from components.search.sweep_config import SweepConfig
from components.search.tune_sweep import check_resources, run_sweep
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig


def test_a_gpu_fraction_is_the_trials_request_and_unset_keeps_cpus_per_worker():
    given = SweepConfig(resources_per_trial={"cpu": 2, "gpu": 0.25}).resources_per_trial
    assert given == {"cpu": 2.0, "gpu": 0.25}
    request = trial_resources(given, cpus_per_worker=1, num_workers=1, in_memory=False)
    assert request == {"cpu": 2.0, "gpu": 0.25}
    assert trial_resources({"cpu": 1, "gpu": 0}, cpus_per_worker=3, num_workers=1, in_memory=False)
    assert trial_resources(None, cpus_per_worker=3, num_workers=1, in_memory=False) == {"cpu": 3}
    assert trial_resources(None, cpus_per_worker=3, num_workers=1, in_memory=True) == {"cpu": 1}
    assert parse_resources({"gpu": 0.5}) == {"cpu": 1.0, "gpu": 0.5}  # one CPU by default


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"cpu": 1, "gpu": 1.5}, "resources_per_trial.gpu must be a fraction in [0, 1]"),
        ({"cpu": 1, "gpu": -0.25}, "resources_per_trial.gpu must be a fraction"),
        ({"cpu": 0}, "resources_per_trial.cpu must be > 0"),
        ({"cpu": "two"}, "resources_per_trial.cpu must be a number"),
        ({"gpus": 1}, "unknown key(s) ['gpus']"),
        (4, "resources_per_trial must be a mapping"),
    ],
)
def test_bad_values_are_refused_naming_the_key(value, message):
    with pytest.raises(ValueError, match="search.resources_per_trial") as err:
        SweepConfig(resources_per_trial=value)
    assert message in str(err.value)


def test_contradictory_set_ups_are_refused():
    gpu = {"resources_per_trial": {"cpu": 1, "gpu": 0.5}}
    with pytest.raises(ValueError, match="train.num_workers=2 each trial is a Ray Train group"):
        check_resources(SweepConfig(method="asha", **gpu), num_workers=2)
    with pytest.raises(ValueError, match="STN, DARTS and random_ws trials train on the CPU"):
        check_resources(SweepConfig(method="stn", **gpu), num_workers=1)
    check_resources(SweepConfig(method="asha"), num_workers=2)  # unset: the group decides
    with pytest.raises(ValueError, match="asks for 0.25 GPU .* the Ray cluster has 0"):
        check_cluster({"cpu": 1, "gpu": 0.25}, {"CPU": 2.0})


def test_a_sweep_asking_for_a_gpu_the_cluster_lacks_is_refused_before_a_trial_starts(
    ray_session, digits_dataset, tmp_path
):
    with pytest.raises(ValueError, match="asks for 0.25 GPU"):
        run_sweep(
            dataset_path=digits_dataset,
            spec=ModelSpec("mlp", (1, 8, 8), 10, tiny=True),
            train=TrainConfig(epochs=1),
            space={"train.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}},
            sweep=SweepConfig(num_samples=2, resources_per_trial={"cpu": 1, "gpu": 0.25}),
            storage_path=tmp_path,
        )
    assert not any(tmp_path.iterdir())  # no experiment was written
