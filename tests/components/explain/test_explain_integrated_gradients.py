"""Integrated Gradients: exact on a linear model, complete on real tiny models."""

import numpy as np
import pytest
import torch
from torch import nn

from components.explain.integrated_gradients import integrated_gradients
from components.models import create_model
from components.models.base import ModelOutput, SennModel


class LinearModel(SennModel):
    """logits = W flatten(x) + b: its IG is (x - baseline) * W[target], with no quadrature error."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=self.linear(x.flatten(1)))


def test_ig_of_linear_model_is_input_minus_baseline_times_weight():
    torch.manual_seed(0)
    model = LinearModel(num_features=12, num_classes=3)
    x = torch.randn(5, 3, 2, 2)
    baseline = torch.randn(3, 2, 2)
    targets = [0, 1, 2, 1, 0]
    attributions, delta = integrated_gradients(model, x, targets, baseline=baseline, n_steps=4)
    weights = model.linear.weight.detach()[targets].reshape(5, 3, 2, 2)
    expected = ((x - baseline) * weights).numpy()
    np.testing.assert_allclose(attributions, expected, atol=1e-5)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "input_shape"), [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("proto_ae", (1, 8, 8))]
)
def test_ig_is_complete_on_tiny_registry_models(name, input_shape):
    torch.manual_seed(0)
    model = create_model(name, input_shape=input_shape, num_classes=4, tiny=True)
    x = torch.randn(6, *input_shape)
    attributions, delta = integrated_gradients(model, x, n_steps=64)
    model.eval()
    with torch.no_grad():
        logits = model(x).logits
        target = logits.argmax(1)  # the default target: the predicted class
        rows = torch.arange(len(x))
        gap = (logits[rows, target] - model(torch.zeros_like(x)).logits[rows, target]).numpy()
    sums = attributions.reshape(len(x), -1).sum(1)
    assert attributions.shape == x.shape
    np.testing.assert_allclose(sums, gap, atol=1e-2 * max(1.0, np.abs(gap).max()))
    np.testing.assert_allclose(delta, sums - gap, atol=1e-4)
    assert np.abs(delta).max() < 1e-2


def test_ig_default_target_is_the_predicted_class():
    torch.manual_seed(1)
    model = create_model("mlp", input_shape=(5,), num_classes=3, tiny=True)
    x = torch.randn(4, 5)
    with torch.no_grad():
        predicted = model(x).logits.argmax(1)
    default, _ = integrated_gradients(model, x, n_steps=8)
    explicit, _ = integrated_gradients(model, x, predicted.tolist(), n_steps=8)
    np.testing.assert_allclose(default, explicit, rtol=1e-6)


def test_ig_rejects_baseline_of_the_wrong_shape():
    model = create_model("mlp", input_shape=(5,), num_classes=3, tiny=True)
    with pytest.raises(ValueError, match="baseline: shape"):
        integrated_gradients(model, torch.zeros(2, 5), baseline=torch.zeros(4))
    with pytest.raises(ValueError, match="target"):
        integrated_gradients(model, torch.zeros(2, 5), target=[0, 1, 2])
