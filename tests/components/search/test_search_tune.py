"""Search spaces and a sweep with a crashing trial (each method's own behaviour is tested on
the sweep flow, tests/flows/test_flows_sweep.py)."""

from __future__ import annotations

import pytest

from components.search.space import group_overrides, tune_space
from components.search.tune_sweep import SweepConfig, run_sweep
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig

SPEC = ModelSpec("mlp", (1, 8, 8), 10, tiny=True)
SPACE = {"train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}


def sweep(tmp_path, dataset, method: str, *, epochs: int = 4, space=SPACE, **kwargs):
    return run_sweep(
        dataset_path=dataset,
        spec=SPEC,
        train=TrainConfig(epochs=epochs, lr=1e-3, early_stopping_patience=0, batch_size=128),
        space=space,
        sweep=SweepConfig(method=method, **kwargs),
        storage_path=tmp_path,
    )


def test_space_names_must_be_known_fields_or_model_kwargs():
    with pytest.raises(ValueError, match="train.lrr"):
        tune_space({"train.lrr": {"type": "uniform", "low": 0, "high": 1}})
    with pytest.raises(ValueError, match="stn.dropout_rate"):
        tune_space({"stn": {"dropout_rate": {"type": "choice", "values": [0.1]}}})
    with pytest.raises(ValueError, match="type 'gauss'"):
        tune_space({"train.lr": {"type": "gauss"}})
    nested = {
        "train": {"lr": {"type": "choice", "values": [0.1]}},
        "darts.order": {"type": "choice", "values": [1]},
    }
    assert set(tune_space(nested)) == {"train.lr", "darts.order"}
    config = {"train.lr": 0.1, "model.dropout": 0.2}
    assert group_overrides(config, "train") == {"lr": 0.1}
    assert group_overrides(config, "model") == {"dropout": 0.2}


@pytest.mark.ray
@pytest.mark.slow
def test_a_crashing_trial_is_reported_failed_and_the_sweep_goes_on(
    ray_session, digits_dataset, tmp_path
):
    space = {"train.optimizer": {"type": "choice", "values": ["adam", "lbfgs"]}}
    out = sweep(tmp_path, digits_dataset, "random", epochs=1, space=space, num_samples=4, seed=1)
    status = {t["config"]["train.optimizer"]: t["status"] for t in out.trials}
    assert status == {"adam": "done", "lbfgs": "failed"}
    failed = next(t for t in out.trials if t["status"] == "failed")
    assert "lbfgs" in failed["error"]
    assert out.best_config["train.optimizer"] == "adam"
