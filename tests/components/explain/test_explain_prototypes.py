"""Prototype gallery and per-sample explanations on real tiny prototype models."""

import json

import numpy as np
import pytest
import torch

from components.explain.prototypes import explain_samples, prototype_gallery
from components.models import create_model


@pytest.fixture(params=[(1, 8, 8), (5,)], ids=["image", "tabular"])
def proto_ae(request):
    torch.manual_seed(0)
    return create_model("proto_ae", input_shape=request.param, num_classes=3, tiny=True)


def test_explain_samples_decomposes_the_forward_logit(proto_ae):
    x = torch.randn(8, *proto_ae.input_shape)
    y = torch.arange(8) % 3
    samples = explain_samples(proto_ae, x, y, top_k=2, class_names=["a", "b", "c"])
    json.dumps(samples, allow_nan=False)
    proto_ae.eval()
    with torch.no_grad():
        logits = proto_ae(x).logits
    classes = proto_ae.prototype_classes().tolist()
    for i, sample in enumerate(samples):
        assert sample["index"] == i and sample["true"] == int(y[i])
        assert sample["predicted"] == int(logits[i].argmax())
        assert sample["logit"] == pytest.approx(float(logits[i].max()), abs=1e-5)
        assert sample["decomposition_error"] < 1e-4
        assert sample["true_name"] == "abc"[sample["true"]]
        contributions = [abs(p["contribution"]) for p in sample["prototypes"]]
        assert len(contributions) == 2 and contributions == sorted(contributions, reverse=True)
        assert all(p["class"] == classes[p["index"]] for p in sample["prototypes"])


def test_explain_samples_keeps_dataset_indices_and_caps_top_k(proto_ae):
    x = torch.randn(3, *proto_ae.input_shape)
    samples = explain_samples(proto_ae, x, [0, 1, 2], top_k=100, indices=[40, 7, 19])
    assert [s["index"] for s in samples] == [40, 7, 19]
    assert all(len(s["prototypes"]) == proto_ae.prototypes.shape[0] for s in samples)


def test_prototype_gallery_decodes_every_prototype(proto_ae):
    gallery = prototype_gallery(proto_ae)
    m = proto_ae.prototypes.shape[0]
    assert gallery["images"].shape == (m, *proto_ae.input_shape)
    with torch.no_grad():
        expected = proto_ae.decoder(proto_ae.prototypes).reshape(m, *proto_ae.input_shape)
    np.testing.assert_allclose(gallery["images"], expected.numpy(), atol=1e-6)
    assert gallery["classes"] == proto_ae.prototype_classes().tolist()


def test_prototype_explanations_reject_models_without_prototypes():
    mlp = create_model("mlp", input_shape=(5,), num_classes=3, tiny=True)
    with pytest.raises(TypeError, match="needs a PrototypeModel"):
        explain_samples(mlp, torch.zeros(2, 5), [0, 1])
    with pytest.raises(TypeError, match="needs a PrototypeModel"):
        prototype_gallery(mlp)


def test_explain_samples_rejects_mismatched_labels(proto_ae):
    with pytest.raises(ValueError, match="must match"):
        explain_samples(proto_ae, torch.zeros(3, *proto_ae.input_shape), [0, 1])
