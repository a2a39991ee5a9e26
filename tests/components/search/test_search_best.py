"""What a finished sweep hands on (components/search/best.py), on hand-made outcomes: no Ray."""

from __future__ import annotations

import pytest

from components.search.best import best_model, search_files, search_summary
from components.search.space import apply_train_overrides
from components.search.tune_sweep import SweepOutcome
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig

SPEC = ModelSpec("mlp", (1, 8, 8), 10, tiny=True, kwargs={"hidden_sizes": [16]})
TRAIN = TrainConfig(epochs=3, lr=1e-3, weight_decay=0.0)
GENOTYPE = {"normal": [["skip_connect", 0]], "concat": [2]}


def outcome(best: dict, **fields) -> SweepOutcome:
    trials = [{"trial": "t0", "config": {"train.lr": 0.5}}, {"trial": "t1", "config": best}]
    return SweepOutcome(best, "t1", {"val_loss": 0.25}, None, trials, "/x/sweep", **fields)


def test_trial_overrides_replace_only_their_fields_and_are_validated():
    train = apply_train_overrides(TRAIN, {"train.lr": 0.01, "model.dropout": 0.3})
    assert (train.lr, train.epochs, train.weight_decay) == (0.01, 3, 0.0)
    with pytest.raises(ValueError, match=r"train\.lr=-1"):
        apply_train_overrides(TRAIN, {"train.lr": -1})


def test_hyperparameter_methods_retrain_the_best_trials_values():
    best = {"train.lr": 0.02, "model.dropout": 0.3}
    spec, train = best_model(SPEC, TRAIN, "asha", outcome(best))
    assert spec.kwargs == {"hidden_sizes": [16], "dropout": 0.3}
    assert (train.lr, train.epochs) == (0.02, 3)


def test_genotype_methods_put_the_genotype_where_the_model_takes_it():
    spec, train = best_model(SPEC, TRAIN, "darts", outcome({}, genotype=GENOTYPE))
    assert spec.kwargs["genotype"] == GENOTYPE and train == TRAIN
    protopnet = ModelSpec("protopnet", (1, 8, 8), 10, tiny=True)
    spec, _ = best_model(protopnet, TRAIN, "random_ws", outcome({}, genotype=GENOTYPE))
    assert spec.kwargs == {"backbone_genotype": GENOTYPE}


def test_stn_retrains_replaying_the_best_trials_schedule_with_twice_the_weight_decay():
    schedules = {
        "t0": [{"dropout": 0.9, "weight_decay": 0.5}],
        "t1": [
            {"epoch": 0, "dropout": 0.5, "weight_decay": 0.1, "shift_probs": [1.0, 0, 0]},
            {"epoch": 1, "dropout": 0.2, "weight_decay": 0.01, "brightness": 0.3},
        ],
    }
    best = outcome({"stn.dropout": 0.5}, schedules=schedules)
    spec, train = best_model(SPEC, TRAIN, "stn", best)
    assert spec == SPEC and train.weight_decay == TRAIN.weight_decay
    assert train.hyper_schedule == (
        {"epoch": 0, "dropout": 0.5, "weight_decay": 0.2},
        {"epoch": 1, "dropout": 0.2, "weight_decay": 0.02, "brightness": 0.3},
    )
    assert search_summary("stn", best)["replayed_schedule"] == list(train.hyper_schedule)


def test_the_best_trial_is_named_not_found_by_its_config():
    # PBT's exploits copy configs: t0 holds the same values as the best trial t1
    shared = {"train.lr": 0.02}
    trials = [{"trial": t, "config": shared, "val_loss": v} for t, v in (("t0", 0.9), ("t1", 0.2))]
    best = SweepOutcome(shared, "t1", {"val_loss": 0.2}, None, trials, "/x/sweep")
    assert search_summary("pbt", best)["best"]["trial"] == "t1"


def test_the_run_folder_keeps_a_genotype_or_schedules_only_when_the_method_made_them():
    plain = outcome({"train.lr": 0.02})
    assert list(search_files(plain)) == ["search.json"]
    assert search_files(plain)["search.json"]["best_config"] == {"train.lr": 0.02}
    made = outcome({}, genotype=GENOTYPE, schedules={"t1": [{"dropout": 0.2}]})
    assert list(search_files(made)) == ["search.json", "genotype.json", "stn_schedules.json"]
    summary = search_summary("asha", plain)
    assert summary["best"] == {
        "trial": "t1",
        "config": {"train.lr": 0.02},
        "val_loss": 0.25,
        "val_accuracy": None,
    }
