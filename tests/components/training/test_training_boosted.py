"""Gradient-boosted final layers: the log-prior start, the additive identity, switching off the
last-trained units, and the errors for what boosting cannot apply to."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from components.training.batches import ShardBatches
from components.training.boosted import (
    BoostError,
    boosted_fit,
    check_final_layer,
    final_pair,
    init_ensemble,
    switch_off,
)
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.steps import validate

CPU = torch.device("cpu")


def mlp_spec(features: int, classes: int, hidden: int) -> ModelSpec:
    return ModelSpec("mlp", (features,), classes, kwargs={"hidden_sizes": [hidden], "dropout": 0.0})


def test_initial_bias_is_the_log_class_priors_and_minimises_cross_entropy():
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    x = torch.randn(len(y), 5)
    model = mlp_spec(5, 3, 8).build()
    bias = init_ensemble(model, ShardBatches(x, y, batch_size=4, shuffle=False), CPU)
    priors = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    torch.testing.assert_close(bias, priors.log())
    # F_0 is that constant for every input: softmax(F_0) = priors, where the CE gradient is zero
    probs = torch.softmax(model(x).logits.double(), dim=1)
    torch.testing.assert_close(probs, priors.expand(len(y), 3), atol=1e-6, rtol=0)


def test_after_every_step_the_network_is_the_sum_of_its_partial_models():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = (rng.normal(0, 3, (3, 6))[y] + rng.normal(0, 1, (120, 6))).astype(np.float32)
    train = ShardBatches(x, y, batch_size=32, shuffle=True)
    spec = mlp_spec(6, 3, 12)
    model = spec.build()
    cfg = TrainConfig(lr=0.01, final_layer="boosted", boost={"units": 4, "epochs": 2})
    probe = torch.as_tensor(x[:40])
    bias = torch.as_tensor(np.log(np.bincount(y) / len(y)), dtype=torch.float32)
    ensemble = [bias.expand(40, 3)]
    seen = []

    def on_step(step: int, part, rho: float) -> None:
        ensemble.append(rho * part(probe))  # the trunk of a one-hidden-layer MLP is the input
        with torch.no_grad():
            torch.testing.assert_close(model(probe).logits, sum(ensemble), atol=1e-5, rtol=1e-5)
        seen.append(step)

    reports = []
    state = boosted_fit(
        model,
        train,
        train,
        cfg=cfg,
        spec=spec,
        report=lambda m, f: reports.append(m),
        on_step=on_step,
    )
    assert seen == [0, 1, 2]
    # one report per step, each telling the progress bar the whole run's length
    assert [(m["epoch"], m["epochs_planned"]) for m in reports] == [(1, 3), (2, 3), (3, 3)]
    assert [h["boost_units"] for h in state.history] == [4, 8, 12]
    # every step moved the ensemble towards the labels
    losses = [h["train_loss"] for h in state.history]
    assert losses[-1] < losses[0]


def test_switching_off_the_last_trained_units_costs_little_accuracy():
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x = x[order]
    x = ((x - x.mean(0)) / (x.std(0) + 1e-6)).astype(np.float32)  # standardised, as ingested
    y = y[order].astype(np.int64)
    train = ShardBatches(x[:1200], y[:1200], batch_size=128, shuffle=True)
    test = ShardBatches(x[1200:], y[1200:], batch_size=600, shuffle=False)
    spec = mlp_spec(64, 10, 32)
    torch.manual_seed(0)
    model = spec.build()
    cfg = TrainConfig(lr=0.02, final_layer="boosted", boost={"units": 8, "epochs": 6})
    boosted_fit(model, train, test, cfg=cfg, spec=spec, report=lambda m, f: None)

    def accuracy(keep_units: int) -> float:
        pruned = copy.deepcopy(model)
        switch_off(pruned, keep_units)
        return validate(pruned, test, cfg, CPU)["val_accuracy"]

    full, without_last, half = accuracy(32), accuracy(24), accuracy(16)
    assert full >= 0.90
    # the paper's claim: the last-trained units matter least
    assert without_last >= full - 0.03
    assert half >= full - 0.05


@pytest.mark.parametrize(
    ("spec", "boost", "message"),
    [
        (ModelSpec("cnn", (1, 8, 8), 3, tiny=True), {}, "supports model=mlp only"),
        (ModelSpec("proto_ae", (8,), 3, tiny=True), {}, "supports model=mlp only"),
        (mlp_spec(8, 3, 12), {"units": 5}, "train.boost.units=5 must divide"),
    ],
)
def test_unsupported_models_and_widths_are_refused(spec, boost, message):
    with pytest.raises(BoostError, match=message):
        check_final_layer(spec, TrainConfig(final_layer="boosted", boost=boost))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"final_layer": "gbnn"}, "train.final_layer='gbnn'"),
        ({"boost": {"unit": 4}}, r"unknown key\(s\) train.boost.unit"),
        ({"boost": {"shrinkage": 0.0}}, r"train.boost.shrinkage=0.0"),
    ],
)
def test_bad_boost_settings_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_the_final_pair_of_a_deeper_mlp_keeps_its_trunk():
    model = ModelSpec("mlp", (8,), 3, kwargs={"hidden_sizes": [16, 12]}).build()
    pair = final_pair(model)
    assert (pair.hidden.in_features, pair.hidden.out_features) == (16, 12)
    assert pair.trunk_trains
