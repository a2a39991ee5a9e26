"""Choosing what ranks a sweep: the metric and its direction, two objectives, their Pareto front
and the rule that picks the retrained point, and the extra metrics trials compute on request.

Closed-form cases throughout: hand-made points whose front is known, models whose
calibration, attributions and prototype maps are known functions of the input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from components.data.ingest import ingest
from components.data.reader import load_meta
from components.data.spec import DataSpec
from components.models.base import PrototypeModel
from components.search.algorithms import tune_config
from components.search.pareto import pareto_front, pick
from components.search.sweep_config import SweepConfig
from components.search.trial_metrics import (
    explanation_faithfulness,
    extra_metrics,
    val_ece,
)
from components.search.tune_sweep import check_metrics
from components.training.checkpoint import ModelSpec

SPACE = {"train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}
OBJECTIVES = ["val_accuracy", "faithfulness"]
# (val_accuracy, faithfulness), both higher-is-better. D is dominated by C, F by A; G equals B.
POINTS = [
    (0.90, 0.10),  # A
    (0.85, 0.30),  # B
    (0.80, 0.35),  # C
    (0.80, 0.20),  # D
    (0.70, 0.36),  # E
    (0.86, 0.05),  # F
    (0.85, 0.30),  # G
]


def test_the_front_holds_exactly_the_non_dominated_points_equal_points_included():
    assert pareto_front(POINTS, ["max", "max"]) == [0, 1, 2, 4, 6]
    # a lower-is-better objective (calibration error) against accuracy
    assert pareto_front([(0.1, 0.9), (0.2, 0.95), (0.3, 0.9)], ["min", "max"]) == [0, 1]


def test_each_pick_rule_chooses_its_stated_front_point():
    modes = ["max", "max"]
    # knee, scaled over the front: A (1, 0) and E (0, 1) lie 1 from utopia, B (0.75, 0.77)
    # 0.34, C (0.5, 0.96) 0.50; G ties B and the earlier point wins.
    assert pick(POINTS, modes, "knee") == 1
    # most faithful among the front points within 0.05 / 0.10 accuracy of the best (0.90)
    assert pick(POINTS, modes, "within", within=0.05) == 1
    assert pick(POINTS, modes, "within", within=0.10) == 2
    assert pick(POINTS, modes, "faithfulness", names=OBJECTIVES) == 4
    assert pick(POINTS, modes, "val_accuracy", names=OBJECTIVES) == 0
    with pytest.raises(ValueError, match="unknown pick rule 'best'"):
        pick(POINTS, modes, "best", names=OBJECTIVES)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"metric": "val_acc"}, "search.metric: 'val_acc' is not a reported metric; choose one"),
        ({"method": "optuna", "objectives": ["val_accuracy", "faith"]}, "search.objectives: 'f"),
        ({"method": "optuna", "objectives": ["val_accuracy"]}, "takes two different metrics"),
        ({"method": "asha", "objectives": OBJECTIVES}, "search.objectives needs search=optuna"),
        ({"method": "optuna", "objectives": OBJECTIVES, "pick": "best"}, "search.pick='best'"),
        ({"metric": "val_loss", "mode": "up"}, "search.mode must be min or max"),
        ({"method": "stn", "metric": "faithfulness"}, "search=stn trials report only val_loss"),
    ],
)
def test_a_metric_the_sweep_cannot_rank_by_is_refused_naming_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(**settings)


def test_the_metric_direction_is_inferred_and_reaches_tune_and_optuna():
    single = tune_config(SweepConfig(method="asha", metric="val_accuracy"), SPACE, 2)
    assert (single.metric, single.mode) == ("val_accuracy", "max")
    assert SweepConfig(metric="val_ece").selection == [("val_ece", "min")]
    two = tune_config(SweepConfig(method="optuna", objectives=OBJECTIVES), SPACE, 2)
    assert (two.metric, two.mode) == (None, None)
    assert (two.search_alg.searcher.metric, two.search_alg.searcher.mode) == (
        OBJECTIVES,
        ["max", "max"],
    )


def test_extra_metrics_need_single_process_trials_and_consistency_a_part_prototype_model(
    digits_dataset,
):
    sweep = SweepConfig(metric="faithfulness")
    with pytest.raises(ValueError, match="train.num_workers=1"):
        check_metrics(sweep, num_workers=2)
    mlp = ModelSpec("mlp", (1, 8, 8), 10, tiny=True).build()
    consistency = SweepConfig(metric="prototype_consistency")
    with pytest.raises(ValueError, match="needs a part-prototype model"):
        check_metrics(consistency, 1, mlp, digits_dataset)


def test_val_ece_of_a_constant_three_to_one_prediction_on_balanced_labels_is_a_quarter():
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([math.log(3.0), 0.0]))  # p(class 0) = 0.75 everywhere
    val = [(torch.zeros(2, 4), torch.tensor([0, 1]))] * 3  # accuracy 0.5
    assert val_ece(model, val) == pytest.approx(0.25)
    assert extra_metrics(["val_loss", "val_ece"], model, val, "") == {
        "val_ece": pytest.approx(0.25)
    }


def test_faithfulness_is_the_prediction_gap_of_removing_the_top_gradient_x_input_feature():
    model = nn.Linear(4, 2, bias=False)  # logit 0 = x1, logit 1 = x0
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 1, 0, 0], [1, 0, 0, 0]]))
    x = np.array([[2.0, 1, 0, 0], [0.5, 3, 0, 0]], np.float32)
    # Sample 1 predicts class 1 from x0 = 2 (x0 tops Gradient x Input); with x0 zeroed the
    # logits are (1, 0). Sample 2 predicts class 0 from x1 = 3; with it zeroed, (0, 0.5).
    # The top quarter of 4 features is one feature.
    sigmoid = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    gaps = [sigmoid(1) - sigmoid(-1), sigmoid(2.5) - sigmoid(-0.5)]
    assert explanation_faithfulness(model, x) == pytest.approx(np.mean(gaps), abs=1e-6)


class RedDetector(PrototypeModel):
    """Prototypes of the given classes whose maps are closeness to pure red, in raw RGB."""

    def __init__(self, classes: list[int], mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.classes = classes
        self.register_buffer("mean", torch.as_tensor(mean).reshape(3, 32, 32))
        self.register_buffer("std", torch.as_tensor(std).reshape(3, 32, 32))

    def prototype_classes(self) -> torch.Tensor:
        return torch.tensor(self.classes)

    def activation_maps(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * self.std + self.mean
        red = -((raw - torch.tensor([0.9, 0.1, 0.1])[:, None, None]) ** 2).sum(1)
        return F.avg_pool2d(red[:, None], 2).expand(-1, len(self.classes), -1, -1)


def test_prototype_consistency_is_one_for_red_detectors_of_the_classes_with_a_red_part(
    tmp_path,
):
    spec = DataSpec(source="parts", num_samples=400, num_classes=4)
    dataset = ingest(spec, tmp_path).path
    meta = load_meta(dataset)
    red = [c for c, parts in enumerate(meta.raw["class_parts"]) if "red_square" in parts]
    model = RedDetector(red, meta.mean, meta.std)
    assert len(red) == 2
    # Every image of those classes holds the red square, and the red peak lies on it.
    assert extra_metrics(["prototype_consistency"], model, [], dataset) == {
        "prototype_consistency": 1.0
    }
