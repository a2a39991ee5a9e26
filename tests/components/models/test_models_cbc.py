"""Stable CBC (cbc): probabilities, losses, exact decompositions and the certified radius."""

import math

import pytest
import torch

from components.models import PrototypeExplanation, create_model
from components.models.cbc import (
    CBCOutput,
    class_radius,
    concept_probabilities,
    pairwise_radius,
)

DIGITS = (1, 8, 8)


def _set_reasoning(model, positive, negative):
    """Give ``model`` exact reasoning probabilities (zeros become -inf logits)."""
    with torch.no_grad():
        model.reasoning_logits.copy_(torch.log(torch.cat([positive, negative])))


def _one_dimensional_model(sigma=2.0):
    """Components at -1 and +1; class 0 needs component 0 present, class 1 component 1.

    Then ``p_0 = exp(-|x + 1| / sigma)`` and ``p_1 = exp(-|x - 1| / sigma)``: the decision
    boundary is ``x = 0`` and the smallest perturbation that flips ``x`` is ``|x|``.
    """
    model = create_model(
        "cbc", input_shape=(1,), num_classes=2, num_components=2, reasonings_per_class=1,
        sigma=sigma, trainable_sigma=False,
    )  # fmt: skip
    with torch.no_grad():
        model.components.copy_(torch.tensor([[-1.0], [1.0]]))
    _set_reasoning(model, torch.eye(2), torch.zeros(2, 2))
    return model


def test_probabilities_follow_the_stable_cbc_formula():
    model = _one_dimensional_model(sigma=2.0)
    x = torch.tensor([[-0.5], [0.25], [3.0]])
    output = model(x)
    assert isinstance(output, CBCOutput)
    expected = torch.stack(
        [torch.exp(-(x[:, 0] + 1).abs() / 2), torch.exp(-(x[:, 0] - 1).abs() / 2)], 1
    )
    assert torch.allclose(output.probabilities, expected, atol=1e-6)
    assert torch.allclose(output.logits, model.config.logit_scale * output.probabilities)


def test_certified_radius_is_exact_on_the_one_dimensional_case():
    model = _one_dimensional_model(sigma=2.0)
    x = torch.tensor([[-0.7], [-0.2], [0.4], [0.9], [1.6]])
    # the certificate is | |x - 1| - |x + 1| | / 2 = min(|x|, 1): exact between the components,
    # a valid but loose lower bound beyond them (x = 1.6 needs a 1.6 push to flip)
    radius = model.certified_radius(x)
    assert torch.allclose(radius, torch.tensor([0.7, 0.2, 0.4, 0.9, 1.0]), atol=1e-5)
    assert (radius <= x[:, 0].abs() + 1e-6).all()


def test_radius_with_negative_reasoning_matches_the_two_dimensional_closed_form():
    # one component at the origin; class 0 = "detected", class 1 = "not detected", so
    # p_0 = d, p_1 = 1 - d with d = exp(-||x|| / sigma): boundary at ||x|| = sigma * ln 2
    sigma = 1.5
    x = torch.tensor([[0.3, -0.4], [0.0, 0.2], [0.6, 0.0]])
    detections = torch.exp(-x.norm(dim=1, keepdim=True) / sigma)
    positive, negative = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    pair = pairwise_radius(detections, positive, negative, torch.tensor(sigma))
    expected = sigma * math.log(2) - x.norm(dim=1)
    assert torch.allclose(pair[:, 0, 1], expected, atol=1e-5)
    radius = class_radius(pair, torch.zeros(3, dtype=torch.long), rpc=1)
    assert torch.allclose(radius, expected, atol=1e-5)


def test_class_radius_takes_the_best_own_concept_against_every_other_class():
    # 2 classes x 2 concepts; rows i (certifying concept), columns j (rival concept)
    pair = torch.tensor(
        [[[0.0, 0.0, 0.3, 0.9], [0.0, 0.0, 0.5, 0.2], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]
    )
    # class 0 vs concept 2: max(0.3, 0.5) = 0.5; vs concept 3: max(0.9, 0.2) = 0.9 -> 0.5
    assert class_radius(pair, torch.tensor([0]), rpc=2).item() == pytest.approx(0.5)


def test_reasoning_is_a_joint_distribution_per_concept():
    model = create_model("cbc", input_shape=DIGITS, num_classes=3)
    positive, negative = model.reasoning()
    assert positive.shape == negative.shape == (20, 6)
    assert torch.allclose((positive + negative).sum(0), torch.ones(6))
    probs = concept_probabilities(torch.rand(5, 20), positive, negative)
    assert ((probs >= 0) & (probs <= 1)).all()


def test_class_probability_is_the_best_concept_of_the_class():
    torch.manual_seed(0)
    model = create_model("cbc", input_shape=(5,), num_classes=3, reasonings_per_class=2)
    output = model(torch.randn(4, 5))
    assert torch.equal(output.probabilities, output.concept_probabilities.view(4, 3, 2).amax(2))


def test_margin_loss_closed_form_and_total_selection():
    model = _one_dimensional_model(sigma=2.0)
    x, y = torch.tensor([[-0.5], [0.2]]), torch.tensor([0, 0])
    output = model(x)
    p = output.probabilities
    expected = torch.relu(p[:, 1] - p[:, 0] + model.config.margin).mean()
    terms = model.loss(output, x, y)
    assert set(terms) == {"total", "margin", "robust"}
    assert terms["margin"].item() == pytest.approx(expected.item(), abs=1e-6)
    assert terms["total"] is terms["margin"]
    # radius w.r.t. the label: 0.5 for the right prediction, -0.2 for the wrong one
    robust = ((model.config.robust_margin - 0.5) + (model.config.robust_margin + 0.2)) / 2
    assert terms["robust"].item() == pytest.approx(robust, abs=1e-5)


def test_robust_flag_optimises_the_robust_term():
    torch.manual_seed(0)
    model = create_model("cbc", input_shape=(4,), num_classes=2, tiny=True, robust=True)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    terms = model.loss(model(x), x, y)
    assert terms["total"] is terms["robust"]
    terms["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_explanation_contributions_add_up_to_the_predicted_logit():
    torch.manual_seed(0)
    model = create_model("cbc", input_shape=DIGITS, num_classes=4, reasonings_per_class=2)
    x = torch.randn(5, *DIGITS)
    logits = model(x).logits
    k = model.config.num_components
    for row, explanation in enumerate(model.explain(x, top_k=k)):
        assert isinstance(explanation, PrototypeExplanation)
        assert explanation.class_index == logits[row].argmax().item()
        assert explanation.logit == pytest.approx(logits[row].max().item(), abs=1e-5)
        assert explanation.bias == 0.0
        assert sum(explanation.contributions) == pytest.approx(explanation.logit, abs=1e-4)
        assert explanation.total_contribution == pytest.approx(explanation.logit, abs=1e-4)
        assert explanation.extras["concept"] // 2 == explanation.class_index
        assert all(0 < s <= 1 for s in explanation.similarities)  # detection probabilities


def test_explain_rejects_top_k_beyond_the_component_count():
    model = create_model("cbc", input_shape=(3,), num_classes=2, tiny=True)
    with pytest.raises(ValueError, match="top_k"):
        model.explain(torch.randn(1, 3), top_k=5)


def test_components_decode_to_the_input_shape():
    model = create_model("cbc", input_shape=DIGITS, num_classes=3, tiny=True)
    assert model.decode_prototypes().shape == (4, *DIGITS)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="sigma"):
        create_model("cbc", input_shape=(3,), num_classes=2, sigma=0.0)


def _blobs(n_per_class, generator):
    centres = 3.0 * torch.eye(3, 6)
    x = centres.repeat_interleave(n_per_class, 0) + 0.5 * torch.randn(
        3 * n_per_class, 6, generator=generator
    )
    return x, torch.arange(3).repeat_interleave(n_per_class)


@pytest.mark.parametrize("robust", [False, True])
def test_tiny_model_learns_blobs_with_positive_certified_radii(robust):
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = _blobs(60, generator)
    x_test, y_test = _blobs(40, generator)
    torch.manual_seed(0)
    model = create_model(
        "cbc", input_shape=(6,), num_classes=3, tiny=True, sigma=2.0, robust=robust
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):  # full-batch steps, well under a second
        loss = model.loss(model(x_train), x_train, y_train)["total"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    predicted = model(x_test).logits.argmax(1)
    assert (predicted == y_test).float().mean().item() >= 0.95
    assert model.certified_radius(x_test)[predicted == y_test].median().item() > 0.3
