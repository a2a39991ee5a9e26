"""PrototypeDL (proto_ae): loss terms, closed-form regularisers, explanations, learning."""

import pytest
import torch

from components.models import PrototypeExplanation, PrototypeModel, create_model
from components.models.proto_ae import (
    ProtoAEOutput,
    r1_loss,
    r2_loss,
    reconstruction_loss,
    squared_distances,
)

DIGITS = (1, 8, 8)


@pytest.fixture
def tiny_image_model():
    torch.manual_seed(0)
    return create_model("proto_ae", input_shape=DIGITS, num_classes=10, tiny=True)


# Two latents and three prototypes in 2-D; squared distances (rows: latents):
#   z0=(0,0): p0=(0,1) -> 1, p1=(3,2) -> 13, p2=(10,0) -> 100
#   z1=(3,0): p0 -> 10,       p1 -> 4,       p2 -> 49
LATENT = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
PROTOTYPES = torch.tensor([[0.0, 1.0], [3.0, 2.0], [10.0, 0.0]])


def test_squared_distances_closed_form():
    expected = torch.tensor([[1.0, 13.0, 100.0], [10.0, 4.0, 49.0]])
    assert torch.equal(squared_distances(LATENT, PROTOTYPES), expected)


def test_r1_is_mean_over_prototypes_of_nearest_latent_distance():
    assert r1_loss(LATENT, PROTOTYPES).item() == pytest.approx((1 + 4 + 49) / 3)


def test_r2_is_mean_over_latents_of_nearest_prototype_distance():
    assert r2_loss(LATENT, PROTOTYPES).item() == pytest.approx((1 + 4) / 2)


def test_reconstruction_loss_sums_features_and_averages_samples():
    x = torch.ones(2, 1, 2, 2)
    reconstruction = torch.zeros_like(x)
    reconstruction[1] = 3.0  # errors: 4 * 1^2 = 4 and 4 * 2^2 = 16
    assert reconstruction_loss(reconstruction, x).item() == pytest.approx(10.0)


def test_forward_parts_have_documented_shapes(tiny_image_model):
    output = tiny_image_model(torch.randn(5, *DIGITS))
    m = tiny_image_model.config.num_prototypes
    assert isinstance(output, ProtoAEOutput)
    assert output.reconstruction.shape == (5, *DIGITS)
    assert output.latent.shape == (5, tiny_image_model.latent_dim)
    assert output.distances.shape == (5, m)
    assert tiny_image_model.prototypes.shape == (m, tiny_image_model.latent_dim)
    assert torch.allclose(
        output.distances, squared_distances(output.latent, tiny_image_model.prototypes)
    )


def test_default_digits_model_matches_the_paper_latent_and_prototype_count():
    model = create_model("proto_ae", input_shape=DIGITS, num_classes=10)
    assert isinstance(model, PrototypeModel)
    assert model.config.num_prototypes == 15
    assert model.latent_dim == 40  # 2x2x10, as the paper's MNIST encoder


def test_loss_terms_are_named_and_total_is_the_paper_weighting(tiny_image_model):
    x, y = torch.randn(8, *DIGITS), torch.arange(8)
    output = tiny_image_model(x)
    terms = tiny_image_model.loss(output, x, y)
    assert set(terms) == {"total", "ce", "reconstruction", "r1", "r2"}
    assert terms["ce"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(output.logits, y).item()
    )
    assert terms["reconstruction"].item() == pytest.approx(
        ((output.reconstruction - x) ** 2).sum(dim=(1, 2, 3)).mean().item()
    )
    protos = tiny_image_model.prototypes
    assert terms["r1"].item() == pytest.approx(r1_loss(output.latent, protos).item())
    assert terms["r2"].item() == pytest.approx(r2_loss(output.latent, protos).item())
    expected = 20 * terms["ce"] + terms["reconstruction"] + terms["r1"] + terms["r2"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_weights_are_config_fields():
    torch.manual_seed(0)
    model = create_model(
        "proto_ae", input_shape=(6,), num_classes=2, tiny=True, lambda_class=0.0, lambda_2=3.0
    )
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 0, 1])
    terms = model.loss(model(x), x, y)
    expected = terms["reconstruction"] + terms["r1"] + 3.0 * terms["r2"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("shape", [DIGITS, (3, 7, 5), (11,)])
def test_decode_prototypes_has_input_shape(shape):
    model = create_model("proto_ae", input_shape=shape, num_classes=3, tiny=True)
    decoded = model.decode_prototypes()
    assert decoded.shape == (model.config.num_prototypes, *shape)
    assert torch.allclose(decoded, model.decoder(model.prototypes).reshape(decoded.shape))


def test_contributions_plus_bias_equal_every_logit(tiny_image_model):
    output = tiny_image_model(torch.randn(6, *DIGITS))
    weight, bias = tiny_image_model.classifier.weight, tiny_image_model.classifier.bias
    contributions = weight.unsqueeze(0) * output.distances.unsqueeze(1)  # (N, classes, m)
    assert torch.allclose(contributions.sum(-1) + bias, output.logits, atol=1e-5)


def test_explanation_decomposes_the_predicted_logit(tiny_image_model):
    x = torch.randn(6, *DIGITS)
    explanations = tiny_image_model.explain(x, top_k=2)
    logits = tiny_image_model(x).logits
    assert len(explanations) == 6
    for row, explanation in enumerate(explanations):
        assert isinstance(explanation, PrototypeExplanation)
        assert explanation.class_index == logits[row].argmax().item()
        assert explanation.logit == pytest.approx(logits[row].max().item(), abs=1e-5)
        assert explanation.total_contribution + explanation.bias == pytest.approx(
            explanation.logit, abs=1e-5
        )
        assert len(explanation.prototype_indices) == 2
        magnitudes = [abs(c) for c in explanation.contributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert all(s > 0 for s in explanation.similarities)  # log((d+1)/(d+1e-4)) > 0


def test_explanation_with_all_prototypes_sums_to_the_logit(tiny_image_model):
    m = tiny_image_model.config.num_prototypes
    for explanation in tiny_image_model.explain(torch.randn(3, *DIGITS), top_k=m):
        assert sorted(explanation.prototype_indices) == list(range(m))
        assert sum(explanation.contributions) + explanation.bias == pytest.approx(
            explanation.logit, abs=1e-5
        )


def test_explain_rejects_top_k_beyond_prototype_count(tiny_image_model):
    with pytest.raises(ValueError, match="top_k"):
        tiny_image_model.explain(torch.randn(1, *DIGITS), top_k=99)


def test_prototype_classes_pick_the_most_negative_weight():
    model = create_model("proto_ae", input_shape=(5,), num_classes=3, tiny=True)  # 4 prototypes
    weight = torch.tensor([[-2.0, 0.5, 0.0, 1.0], [0.0, -1.0, 0.3, 2.0], [1.0, 0.0, -0.1, -3.0]])
    with torch.no_grad():
        model.classifier.weight.copy_(weight)
    assert model.prototype_classes().tolist() == [0, 1, 2, 2]


def _blobs(n_per_class, generator):
    centres = torch.tensor([[3.0, 0, 0, 0, 0, 0], [0, 3.0, 0, 0, 0, 0], [0, 0, 3.0, 0, 0, 0]])
    x = centres.repeat_interleave(n_per_class, 0)
    x = x + 0.5 * torch.randn(x.shape, generator=generator)
    return x, torch.arange(3).repeat_interleave(n_per_class)


def test_tiny_model_learns_separable_blobs():
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = _blobs(60, generator)
    x_test, y_test = _blobs(40, generator)
    torch.manual_seed(0)
    model = create_model("proto_ae", input_shape=(6,), num_classes=3, tiny=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):  # full-batch steps, well under a second
        loss = model.loss(model(x_train), x_train, y_train)["total"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        accuracy = (model(x_test).logits.argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.95
