"""``train.class_weights=balanced``: scikit-learn's balanced weights, applied to each sample's
cross-entropy, raise the recall of a rare class."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from components.models import create_model
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec
from components.training.class_weights import balanced_weights, weights_line
from components.training.config import TrainConfig
from components.training.fit import fit
from components.training.steps import train_epoch


def test_balanced_weights_are_n_over_k_n_c():
    torch.testing.assert_close(balanced_weights([30, 10]), torch.tensor([40 / 60, 40 / 20]))
    weights = balanced_weights([30, 0, 10])  # a class without rows weighs nothing
    torch.testing.assert_close(weights, torch.tensor([40 / 60, 0.0, 2.0]))
    assert float(weights @ torch.tensor([30.0, 0.0, 10.0])) == pytest.approx(40)  # mean 1
    assert weights_line([30, 10], ["cat", "dog"]) == "cat 0.667 (30 rows), dog 2 (10 rows)"
    allowed = re.escape("train.class_weights='inverse' (must be one of none, balanced)")
    with pytest.raises(ValueError, match=allowed):
        TrainConfig(class_weights="inverse")


def test_an_epoch_weighs_each_samples_cross_entropy_by_its_class():
    torch.manual_seed(0)
    x, y = torch.randn(8, 4), torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    model = create_model("mlp", input_shape=(4,), num_classes=2, tiny=True)
    weights = balanced_weights(torch.bincount(y))
    model.eval()  # no dropout: the loss is a function of the weights alone
    with torch.no_grad():
        per_sample = torch.nn.functional.cross_entropy(model(x).logits, y, reduction="none")
    expected = float((per_sample * weights[y]).mean())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the epoch reports, changes nothing
    batches = ShardBatches(x, y, batch_size=8, shuffle=False)
    cfg = TrainConfig(precision="fp32")
    out = train_epoch(model, batches, opt, cfg, torch.device("cpu"), class_weights=weights)
    plain = train_epoch(model, batches, opt, cfg, torch.device("cpu"))
    assert out["train_ce"] == pytest.approx(expected, rel=1e-5)
    assert plain["train_ce"] == pytest.approx(float(per_sample.mean()), rel=1e-5)


def _minority_recall(class_weights: str) -> float:
    """An MLP on two overlapping blobs, 9 rows of class 0 to each of class 1: the recall of
    class 1 on a balanced test set."""
    rng = np.random.default_rng(0)

    def blobs(n0: int, n1: int):
        x = np.concatenate([rng.normal(0.0, 1.0, (n0, 2)), rng.normal(1.5, 1.0, (n1, 2))])
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor([0] * n0 + [1] * n1)

    x, y = blobs(540, 60)
    torch.manual_seed(0)
    spec = ModelSpec("mlp", (2,), 2, tiny=True)
    model = spec.build()
    cfg = TrainConfig(
        epochs=15, batch_size=64, lr=0.01, early_stopping_patience=0, class_weights=class_weights
    )
    val = ShardBatches(x, y, batch_size=600, shuffle=False)
    fit(model, ShardBatches(x, y, batch_size=64, shuffle=True), val, cfg=cfg, spec=spec,
        report=lambda metrics, folder: None)  # fmt: skip
    x_test, y_test = blobs(0, 500)
    with torch.no_grad():
        return float((model.eval()(x_test).logits.argmax(1) == y_test).float().mean())


@pytest.mark.slow
def test_balanced_weights_raise_the_recall_of_a_rare_class():
    plain, balanced = _minority_recall("none"), _minority_recall("balanced")
    # Means 2.12 apart: the Bayes rule under the 9:1 prior has a class-1 recall of
    # Phi(1.06 - ln 9 / 2.12) = 0.51, under equal class weights Phi(1.06) = 0.86
    assert plain < 0.6 and balanced > 0.7, (plain, balanced)


def test_the_pipeline_refuses_class_weights_for_a_model_without_cross_entropy():
    from flows.config import ConfigError
    from flows.pipeline import check_mixup

    cbc = create_model("cbc", input_shape=(64,), num_classes=10, tiny=True)
    with pytest.raises(ConfigError, match=r"train\.class_weights=balanced: model CBC"):
        check_mixup(cbc, TrainConfig(class_weights="balanced"))


@pytest.mark.prefect
def test_a_weight_sharing_sweep_says_its_search_is_unweighted(prefect_harness, caplog):
    from prefect import flow

    from flows.sweep import _warn_unweighted_search

    @flow
    def checks() -> None:
        for method in ("stn", "asha"):
            _warn_unweighted_search(method, TrainConfig(class_weights="balanced"))
        _warn_unweighted_search("darts", TrainConfig())

    checks()
    warned = [r.getMessage() for r in caplog.records if "weighs the retrain only" in r.getMessage()]
    assert warned == [
        "train.class_weights=balanced weighs the retrain only: stn searches with its own "
        "unweighted training loop"
    ]
