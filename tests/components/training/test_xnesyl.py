"""X-NeSyL SHAP-Backprop: SHAP-GED in closed form, exact part Shapley values and the
misattribution weights on a hand-built model, the weighted cross-entropy through
``train_epoch``, and ``train.xnesyl`` validation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from components.models.base import ModelOutput, SennModel
from components.training.config import TrainConfig
from components.training.steps import train_epoch
from components.training.xnesyl import XNeSyLWeights, misattribution, misattribution_weight
from components.training.xnesyl_config import XNeSyLConfig
from components.training.xnesyl_graph import KnowledgeGraph, shap_ged
from components.training.xnesyl_shap import part_shapley

CLASSES = ("reddish", "greenish")
PARTS = ("red", "green", "blue")
# class 0 is made of red; class 1 of green and blue.
GRAPH = KnowledgeGraph.from_mapping({"reddish": ["red"], "greenish": ["green", "blue"]},
                                    CLASSES, PARTS)  # fmt: skip


class ChannelMeans(SennModel):
    """logit_0 = 40 * mean(red) + 40 * mean(blue), logit_1 = 40 * mean(green): blue (no part of
    class 0) pushes class 0 up, so it pushes class 1 (of which it is a part) down."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[40.0, 0.0, 40.0], [0.0, 40.0, 0.0]]))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=self.head(x.mean(dim=(2, 3))))


def _images(parts_per_image: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 images on a black background; part k is a 2x2 square of channel k at slot k."""
    x = torch.zeros(len(parts_per_image), 3, 8, 8)
    labels = torch.zeros(len(parts_per_image), 8, 8, dtype=torch.uint8)
    for i, parts in enumerate(parts_per_image):
        for k in parts:
            x[i, k, 3 * k : 3 * k + 2, 0:2] = 1.0
            labels[i, 3 * k : 3 * k + 2, 0:2] = k + 1
    return x, labels


# (parts, label): aligned; blue positive for class 0 (not its part); blue negative for class 1
# (its part); red negative for class 1 (not its part).
SAMPLES = [([0], 0), ([0, 2], 0), ([1, 2], 1), ([1, 0], 1)]
MISATTRIBUTED = [False, True, True, False]


def test_shap_ged_counts_missing_and_extra_edges_between_the_induced_nodes():
    kg = np.array([[1, 1, 0], [0, 1, 1]], bool)  # class 0: parts 0, 1; class 1: parts 1, 2
    shap = torch.tensor(
        [
            [[0.2, 0.5, 0.0], [0.0, 0.0, 0.0]],  # exactly class 0's edges: 0
            [[0.2, 0.0, 0.0], [0.0, 0.0, 0.0]],  # nodes c0, p0: no edge missing, none extra: 0
            [[0.2, 0.0, 0.0], [0.0, 0.3, 0.0]],  # nodes c0 c1 p0 p1: c0-p1 missing: 1
            [[0.0, 0.0, 0.3], [0.0, 0.0, 0.005]],  # c0-p2 extra; c1 below threshold: 1
            [[0.0, 0.0, 0.3], [0.0, 0.2, 0.1]],  # c0-p2 extra, c0-p1 missing: 2
        ]
    )
    assert shap_ged(shap, kg, threshold=0.01).tolist() == [0.0, 0.0, 1.0, 1.0, 2.0]


def test_part_shapley_is_exact_on_two_parts_and_absent_parts_get_zero():
    model = ChannelMeans()
    x, labels = _images([[0, 2]])
    shap, probs = part_shapley(model, x, labels, num_parts=3)

    def p(parts):  # class probabilities with only ``parts`` left
        return model(_images([parts])[0]).logits.softmax(dim=1)[0]

    blue = 0.5 * ((p([0, 2]) - p([0])) + (p([2]) - p([])))
    torch.testing.assert_close(shap[0, :, 2], blue)
    torch.testing.assert_close(shap[0].sum(dim=1), p([0, 2]) - p([]))  # efficiency
    assert shap[0, :, 1].abs().max() == 0  # green is absent: a dummy player
    torch.testing.assert_close(probs[0], p([0, 2]))


def test_weight_exceeds_one_exactly_for_samples_that_contradict_the_graph():
    model = ChannelMeans()
    x, labels = _images([parts for parts, _ in SAMPLES])
    y = torch.tensor([label for _, label in SAMPLES])
    shap, _ = part_shapley(model, x, labels, num_parts=3)
    m = misattribution(shap, GRAPH.signs, y)
    weights = misattribution_weight(m, "exponential", h=1.0)
    assert (weights > 1).tolist() == MISATTRIBUTED
    assert weights[~torch.tensor(MISATTRIBUTED)].tolist() == [1.0, 1.0]
    torch.testing.assert_close(weights[1], torch.exp(shap[1, 0, 2]))  # blue's positive SHAP
    linear = misattribution_weight(m, "linear", h=2.0)
    torch.testing.assert_close(linear[2], 1 + 2 * shap[2, 1, 2].abs())  # blue's negative SHAP
    # a threshold above the misattributions' size forgives them
    assert misattribution(shap, GRAPH.signs, y, threshold=1.0).abs().max() == 0


def test_train_epoch_weights_each_samples_cross_entropy_by_its_misattribution():
    model = ChannelMeans()
    x, labels = _images([parts for parts, _ in SAMPLES])
    y = torch.tensor([label for _, label in SAMPLES])
    hook = XNeSyLWeights(GRAPH, labels.numpy(), XNeSyLConfig(enabled=True))
    expected_w = hook(model, x, y, torch.arange(4))
    ce = nn.functional.cross_entropy(model(x).logits, y, reduction="none").detach()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    cfg = TrainConfig(epochs=1, precision="fp32")
    batches = [(x, y, torch.arange(4))]
    out = train_epoch(model, batches, opt, cfg, torch.device("cpu"), weights=hook)
    assert out["train_ce"] == pytest.approx(float((expected_w * ce).mean()), rel=1e-6)
    assert out["train_ce"] > float(ce.mean())  # the misattributed samples weigh more
    metrics = hook.epoch_metrics(torch.device("cpu"))
    assert metrics["xnesyl_misattributed"] == 0.5  # two of the four samples, each pass
    assert metrics["xnesyl_weight"] == pytest.approx(float(expected_w.mean()), rel=1e-6)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"weighting": "quadratic"}, "train.xnesyl.weighting"),
        ({"h": 0}, "train.xnesyl.h"),
        ({"threshold": -0.1}, "train.xnesyl.threshold"),
        ({"target": "logit"}, "train.xnesyl.target"),
        ({"samples": -1}, "train.xnesyl.samples"),
        ({"ged_threshold": 0}, "train.xnesyl.ged_threshold"),
        ({"enabled": "yes"}, "train.xnesyl.enabled"),
        ({"graph": "/no/such/graph.yaml"}, "train.xnesyl.graph"),
        ({"weight": 2.0}, "train.xnesyl.weight"),
    ],
)
def test_bad_settings_name_their_key(settings, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        TrainConfig(xnesyl=settings)


def test_graph_yaml_is_checked_against_the_dataset(tmp_path):
    meta = SimpleNamespace(class_names=CLASSES, raw={"parts": list(PARTS)})
    good = tmp_path / "good.yaml"
    good.write_text("reddish: [red]\ngreenish: [green, blue]\n")
    assert KnowledgeGraph.from_meta(meta, str(good)).edges.tolist() == GRAPH.edges.tolist()
    for text, problem in [
        ("reddish: [red]\n", "classes missing \\['greenish'\\]"),
        ("reddish: [red]\ngreenish: [purple]\n", "class 'greenish' must list parts"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=f"train.xnesyl.graph: {problem}"):
            KnowledgeGraph.from_meta(meta, str(bad))
    with pytest.raises(ValueError, match="graph=auto needs the dataset's class_parts"):
        KnowledgeGraph.from_meta(meta, "auto")
    no_parts = SimpleNamespace(class_names=CLASSES, raw={})
    with pytest.raises(ValueError, match="train.xnesyl needs a dataset whose meta names its parts"):
        KnowledgeGraph.from_meta(no_parts, "auto")
    assert math.isclose(XNeSyLConfig(graph=str(good)).h, 1.0)
