"""Concept-Centric Transformer (cct): attention invariants, the explanation loss in closed form,
part-mask concept targets, a hand-built cross-attention, refusals."""

import pytest
import torch

from components.models import create_model
from components.models.cct import (
    ConceptCrossAttention,
    explanation_loss,
    mask_concept_targets,
)

IMAGE = (3, 12, 10)
STEPS, LR = 10, 1.0


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model("cct", input_shape=IMAGE, num_classes=3, tiny=True).eval()


def test_concept_maps_are_distributions_over_concepts_and_slots_over_positions(model):
    x = torch.randn(4, *IMAGE)
    out = model(x)
    maps = model.concept_attention(x)
    k = model.config.num_concepts
    assert maps.shape == (4, k, *model.grid) == (4, k, 3, 3)
    assert torch.allclose(maps.sum(dim=1), torch.ones(4, 3, 3), atol=1e-5)
    assert torch.allclose(out.slot_weights.sum(dim=2), torch.ones(4, k), atol=1e-5)
    assert torch.equal(maps.flatten(2).transpose(1, 2), out.concept_attention)


def test_explanation_loss_is_zero_at_the_target_and_k_minus_1_over_k_at_uniform():
    k = 4
    targets = torch.zeros(2, 3, k)
    targets[0, 0, 1] = 2.0  # normalised to one-hot
    targets[1, 2, :2] = 1.0  # half concept 0, half concept 1
    attention = torch.full((2, 3, k), 1 / k)  # background tokens: anything, they are skipped
    wanted = attention.clone()
    wanted[0, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    wanted[1, 2] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    assert explanation_loss(wanted, targets) == 0
    # K * mean over the 2 supervised tokens' entries of the squared error:
    one_hot = (1 - 1 / k) ** 2 + (k - 1) / k**2
    half = 2 * (0.5 - 1 / k) ** 2 + 2 / k**2
    expected = k * (one_hot + half) / (2 * k)
    assert explanation_loss(attention, targets).item() == pytest.approx(expected)
    assert explanation_loss(attention, torch.zeros(2, 3, k)) == 0


def test_mask_concept_targets_are_each_tokens_part_shares():
    mask = torch.zeros(1, 4, 4, dtype=torch.uint8)
    mask[0, :2, :2] = 1  # part 1 fills the top-left token
    mask[0, 2, 3] = 2  # part 2 covers a quarter of the bottom-right token
    targets = mask_concept_targets(mask, (2, 2), num_concepts=3)
    expected = torch.zeros(1, 4, 3)
    expected[0, 0, 0], expected[0, 3, 1] = 1.0, 0.25
    assert torch.equal(targets, expected)
    with pytest.raises(ValueError, match=r"model\.params\.num_concepts=1"):
        mask_concept_targets(mask, (2, 2), num_concepts=1)


def test_hand_built_cross_attention_with_zero_queries_averages_the_concepts():
    torch.manual_seed(0)
    layer = ConceptCrossAttention(4, 2, 3, attention_dropout=0.0, dropout=0.0)
    torch.nn.init.zeros_(layer.q.weight)
    tokens, concepts = torch.randn(2, 5, 4), torch.randn(2, 6, 4)
    scores, attention = layer(tokens, concepts)
    assert torch.allclose(attention, torch.full((2, 5, 6), 1 / 6))
    values = concepts @ layer.kv.weight[4:].T
    expected = layer.proj(values.mean(dim=1))[:, None].expand(2, 5, 3)
    assert torch.allclose(scores, expected, atol=1e-6)


def test_loss_adds_the_weighted_explanation_only_with_concept_targets(model):
    x, y = torch.randn(2, *IMAGE), torch.tensor([0, 2])
    out = model(x)
    plain = model.loss(out, x, y)
    assert "explanation" not in plain and plain["total"] == plain["ce"]
    targets = torch.zeros(2, 9, model.config.num_concepts)
    targets[:, 0, 0] = 1.0
    with model.concept_targets(targets):
        terms = model.loss(out, x, y)
    assert terms["explanation"] > 0
    assert torch.allclose(terms["total"], terms["ce"] + 2.0 * terms["explanation"])
    with (
        pytest.raises(ValueError, match=r"\(N, 9, 4\)"),
        model.concept_targets(torch.zeros(2, 8, 4)),
    ):
        pass


def test_explanation_loss_trains_the_attention_towards_the_targets():
    torch.manual_seed(0)
    model = create_model("cct", input_shape=IMAGE, num_classes=2, tiny=True, expl_weight=1.0)
    x, y = torch.randn(2, *IMAGE), torch.tensor([0, 1])
    targets = torch.zeros(2, 9, 4)
    targets[:, :, 2] = 1.0  # every token belongs to concept 2
    with model.concept_targets(targets):
        first = model.loss(model(x), x, y)["explanation"].item()
        for _ in range(STEPS):  # plain gradient descent (torch.optim's first use costs seconds)
            model.zero_grad()
            model.loss(model(x), x, y)["total"].backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= LR * p.grad
        last = model.loss(model(x), x, y)["explanation"].item()
    assert last < 0.1 * first


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"num_heads": 3}, r"model\.params\.num_heads=3 must divide model\.params\.embed_dim=64"),
        ({"num_concepts": 0}, r"model\.params\.num_concepts"),
        ({"attention_dropout": 1.0}, r"model\.params\.attention_dropout"),
        ({"expl_weight": -1.0}, r"model\.params\.expl_weight"),
    ],
)
def test_bad_params_name_the_key(params, key):
    with pytest.raises(ValueError, match=key):
        create_model("cct", input_shape=IMAGE, num_classes=3, **params)


@pytest.mark.parametrize("shape", [(13,), (2, 16)])
def test_non_image_input_is_refused_with_a_pointer_to_mlp(shape):
    with pytest.raises(ValueError, match=r"\(C, H, W\).*'mlp'"):
        create_model("cct", input_shape=shape, num_classes=2)
