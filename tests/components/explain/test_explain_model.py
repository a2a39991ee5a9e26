"""explain_model: the promised keys for plain and prototype models; seeded sample choice."""

import json

import numpy as np
import pytest
import torch

from components.explain import explain_model, select_samples
from components.models import create_model

KEYS = {"kind", "indices", "samples", "inputs", "attributions", "ig_delta", "gallery"}


def _data(n: int = 40, num_classes: int = 4):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=generator)
    y = torch.arange(n) % num_classes
    return x, y


def test_explain_model_for_a_plain_model_gives_attributions_only():
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=4, tiny=True)
    x, y = _data()
    result = explain_model(model, x, y, num_samples=3, ig_steps=16, class_names=list("wxyz"))
    assert set(result) == KEYS
    assert result["kind"] == "attribution" and result["gallery"] is None
    assert result["inputs"].shape == result["attributions"].shape == (3, 1, 8, 8)
    np.testing.assert_array_equal(result["inputs"], x[result["indices"]].numpy())
    json.dumps(result["samples"], allow_nan=False)
    with torch.no_grad():
        probabilities = torch.softmax(model.eval()(x[result["indices"]]).logits.double(), dim=1)
    for row, (sample, index) in enumerate(zip(result["samples"], result["indices"], strict=True)):
        assert sample["index"] == index and sample["true"] == int(y[index])
        assert sample["true_name"] == "wxyz"[sample["true"]]
        # The model's probability of the class it predicts for this sample.
        assert sample["predicted"] == int(probabilities[row].argmax())
        assert sample["probability"] == pytest.approx(probabilities[row].max().item(), rel=1e-6)


def test_explain_model_for_a_prototype_model_adds_gallery_and_decompositions():
    torch.manual_seed(0)
    model = create_model("proto_ae", input_shape=(1, 8, 8), num_classes=4, tiny=True)
    x, y = _data()
    result = explain_model(model, x, y, num_samples=5, top_k=2, ig_steps=16)
    assert set(result) == KEYS
    assert result["kind"] == "prototype"
    assert result["gallery"]["images"].shape == (model.prototypes.shape[0], 1, 8, 8)
    assert result["attributions"].shape == (5, 1, 8, 8) and result["ig_delta"].shape == (5,)
    json.dumps(result["samples"], allow_nan=False)
    for sample in result["samples"]:
        assert sample["decomposition_error"] < 1e-4
        assert len(sample["prototypes"]) == 2
    assert np.abs(result["ig_delta"]).max() < 0.05


def test_select_samples_spreads_over_classes_and_is_seeded():
    y = np.repeat(np.arange(5), [30, 2, 9, 1, 8])
    picks = select_samples(y, 7, seed=3)
    assert len(set(picks.tolist())) == 7
    assert sorted(y[picks[:5]].tolist()) == [0, 1, 2, 3, 4]  # one per class first
    np.testing.assert_array_equal(picks, select_samples(y, 7, seed=3))
    assert not np.array_equal(select_samples(y, 7, seed=4), picks)
    assert sorted(select_samples(y[:3], 10).tolist()) == [0, 1, 2]  # asks for more than exist


def test_explain_model_rejects_mismatched_inputs():
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=4, tiny=True)
    x, y = _data()
    with pytest.raises(ValueError, match="y has"):
        explain_model(model, x, y[:-1])
    with pytest.raises(ValueError, match="num_samples"):
        explain_model(model, x, y, num_samples=0)
