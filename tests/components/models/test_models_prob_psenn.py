"""Prob-PSENN (prob_psenn): sampled forward passes, loss terms, uncertainty and explanations."""

import math

import pytest
import torch

from components.models import PrototypeExplanation, create_model
from components.models.prob_psenn import (
    ProbPSENNOutput,
    entropy_decomposition,
    gaussian_nll,
    interpolated_percentile,
)

DIGITS = (1, 8, 8)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return create_model("prob_psenn", input_shape=DIGITS, num_classes=3, tiny=True)


def test_forward_draws_num_samples_in_training_and_eval_samples_in_eval(tiny_model):
    x = torch.randn(5, *DIGITS)
    train_out = tiny_model.train()(x)
    eval_out = tiny_model.eval()(x)
    assert isinstance(train_out, ProbPSENNOutput)
    assert train_out.sample_probs.shape == (5, tiny_model.config.num_samples, 3)
    assert eval_out.sample_probs.shape == (5, tiny_model.config.eval_samples, 3)
    assert eval_out.distances.shape == (5, tiny_model.config.eval_samples, 3)
    assert eval_out.reconstruction.shape == x.shape


def test_logits_are_the_log_of_the_mean_sampled_predictive(tiny_model):
    output = tiny_model.eval()(torch.randn(4, *DIGITS))
    mean = torch.softmax(output.sample_logits, dim=-1).mean(dim=1)
    assert torch.allclose(output.logits.exp(), mean, atol=1e-6)
    assert torch.allclose(output.sample_probs.sum(-1), torch.ones(4, output.sample_probs.shape[1]))


def test_sample_logits_are_linear_in_distances_to_drawn_prototypes(tiny_model):
    output = tiny_model.eval()(torch.randn(3, *DIGITS))
    assert torch.allclose(
        output.sample_logits, output.distances @ tiny_model.classifier_weight, atol=1e-6
    )


def test_eval_draws_are_seeded_and_training_draws_are_not(tiny_model):
    x = torch.randn(3, *DIGITS)
    tiny_model.eval()
    assert torch.equal(tiny_model(x).logits, tiny_model(x).logits)
    tiny_model.train()
    assert not torch.equal(tiny_model(x).sample_logits, tiny_model(x).sample_logits)


def test_draws_follow_the_prototype_gaussians():
    torch.manual_seed(0)
    model = create_model("prob_psenn", input_shape=(4,), num_classes=2, tiny=True, init_std=0.5)
    draws = model.sample_prototypes(20_000)
    assert torch.allclose(draws.mean(0), model.prototype_means, atol=0.02)
    assert torch.allclose(draws.std(0), torch.full_like(draws[0], 0.5), atol=0.02)


def test_classifier_starts_at_the_reference_init():
    model = create_model("prob_psenn", input_shape=(5,), num_classes=3, prototypes_per_class=2)
    expected = -0.5 * torch.tensor(
        [[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
    )
    assert torch.equal(model.classifier_weight, expected)
    assert model.prototype_classes().tolist() == [0, 0, 1, 1, 2, 2]


def test_gaussian_nll_closed_form():
    latent = torch.tensor([[1.0, 0.0]])
    mean, log_std = torch.zeros(1, 2), torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * (1^2 + 0^2) + log 1 + log 2 + log(2 pi)
    expected = 0.5 + math.log(2.0) + math.log(2 * math.pi)
    assert gaussian_nll(latent, mean, log_std).item() == pytest.approx(expected, rel=1e-6)


def test_loss_terms_are_the_reference_terms_and_weights(tiny_model):
    tiny_model.train()
    x, y = torch.randn(6, *DIGITS), torch.tensor([0, 1, 2, 0, 1, 2])
    output = tiny_model(x)
    terms = tiny_model.loss(output, x, y)
    assert set(terms) == {"total", "nll", "reconstruction", "r1", "r2"}
    per_draw = -torch.log_softmax(output.sample_logits, -1).gather(
        2, y.view(-1, 1, 1).expand(-1, output.sample_logits.shape[1], 1)
    )
    assert terms["nll"].item() == pytest.approx(per_draw.mean().item(), rel=1e-5)
    assert terms["reconstruction"].item() == pytest.approx(
        ((output.reconstruction - x) ** 2).mean().item(), rel=1e-6
    )
    density = gaussian_nll(output.latent, tiny_model.prototype_means, tiny_model.prototype_log_stds)
    r2 = density[torch.arange(6), y].clamp_min(-1.0).mean()  # one prototype per class
    assert terms["r2"].item() == pytest.approx(r2.item(), rel=1e-5)
    assert terms["r1"].item() == pytest.approx(density.min(0).values.mean().item(), rel=1e-5)
    cfg = tiny_model.config
    expected = terms["nll"] + cfg.lambda_rec * terms["reconstruction"] + 0.05 * terms["r2"]
    assert cfg.lambda_r1 == 0.0
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_entropy_decomposition_closed_form_and_identities():
    # sample 1 says class 0, sample 2 class 1: all uncertainty is disagreement (epistemic)
    split = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    parts = entropy_decomposition(split)
    assert parts["total"].item() == pytest.approx(math.log(2))
    assert parts["aleatoric"].item() == pytest.approx(0.0)
    assert parts["epistemic"].item() == pytest.approx(math.log(2))
    probs = torch.softmax(torch.randn(50, 7, 4, generator=torch.Generator().manual_seed(0)), -1)
    parts = entropy_decomposition(probs)
    assert torch.allclose(parts["total"], parts["aleatoric"] + parts["epistemic"])
    assert all((v >= 0).all() for v in parts.values())
    agreeing = probs[:, :1].expand(-1, 7, -1)
    parts = entropy_decomposition(agreeing)
    assert torch.allclose(parts["epistemic"], torch.zeros(50, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(parts["total"], parts["aleatoric"])


def test_interpolated_percentile_closed_form():
    quantiles = torch.tensor([[0.0, 1.0, 3.0]]).expand(4, -1)  # levels 0, 0.5, 1
    values = torch.tensor([-1.0, 0.5, 2.0, 9.0])
    expected = torch.tensor([0.0, 0.25, 0.75, 1.0])
    assert torch.allclose(interpolated_percentile(values, quantiles), expected)


def test_explanation_percentile_needs_the_reference_and_travels_in_state_dict(tiny_model):
    x, y = torch.randn(30, *DIGITS), torch.arange(3).repeat(10)
    tiny_model.eval()
    assert torch.isnan(tiny_model.uncertainty(x)["explanation_percentile"]).all()
    tiny_model.fit_reference(x, y)
    state = tiny_model.state_dict()
    assert bool(state["reference_fitted"]) and state["reference_quantiles"].shape == (3, 101)
    # on its own reference inputs (those predicted as their class) the percentile spans [0, 1]
    info = tiny_model.uncertainty(x)
    own = info["prediction"] == y
    percentile = info["explanation_percentile"][own]
    assert ((percentile >= 0) & (percentile <= 1)).all()
    restored = create_model("prob_psenn", input_shape=DIGITS, num_classes=3, tiny=True).eval()
    restored.load_state_dict(state)
    assert torch.equal(
        restored.uncertainty(x)["explanation_percentile"], info["explanation_percentile"]
    )


def test_fit_reference_rejects_a_missing_class(tiny_model):
    with pytest.raises(ValueError, match="class 2"):
        tiny_model.fit_reference(torch.randn(4, *DIGITS), torch.tensor([0, 1, 0, 1]))


def test_explanation_decomposes_the_mean_prototype_logit(tiny_model):
    tiny_model.eval()
    x = torch.randn(6, *DIGITS)
    predictive = tiny_model(x).logits
    mean_logits = tiny_model.mean_prototype_logits(x)
    for row, explanation in enumerate(tiny_model.explain(x, top_k=3)):
        assert isinstance(explanation, PrototypeExplanation)
        k = explanation.class_index
        assert k == predictive[row].argmax().item()
        assert explanation.logit == pytest.approx(mean_logits[row, k].item(), abs=1e-5)
        assert sum(explanation.contributions) + explanation.bias == pytest.approx(
            explanation.logit, abs=1e-5
        )
        assert explanation.extras["predictive_logit"] == pytest.approx(predictive[row, k].item())
        extras = explanation.extras
        assert extras["total"] == pytest.approx(extras["aleatoric"] + extras["epistemic"])


def test_explain_rejects_top_k_beyond_the_prototype_count(tiny_model):
    with pytest.raises(ValueError, match="top_k"):
        tiny_model.explain(torch.randn(1, *DIGITS), top_k=4)


def test_decode_prototypes_has_input_shape(tiny_model):
    assert tiny_model.decode_prototypes().shape == (3, *DIGITS)


def _blobs(n_per_class, generator):
    centres = 3.0 * torch.eye(3, 6)
    noise = 0.7 * torch.randn(3 * n_per_class, 6, generator=generator)
    return centres.repeat_interleave(n_per_class, 0) + noise, torch.arange(3).repeat_interleave(
        n_per_class
    )


def test_tiny_model_learns_blobs_and_is_less_certain_off_the_data():
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = _blobs(60, generator)
    x_test, y_test = _blobs(40, generator)
    torch.manual_seed(0)
    model = create_model("prob_psenn", input_shape=(6,), num_classes=3, tiny=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):  # full-batch steps, about a second
        loss = model.loss(model(x_train), x_train, y_train)["total"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    info = model.uncertainty(x_test)
    assert (info["prediction"] == y_test).float().mean().item() >= 0.95
    # between the blobs (equidistant from all centres) the model must hesitate
    between = torch.full((10, 6), 1.0) * torch.tensor([1.0, 1.0, 1.0, 0, 0, 0])
    assert model.uncertainty(between)["total"].mean() > 2 * info["total"].mean()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_under_bf16_and_seeded_eval_draws():
    torch.manual_seed(0)
    model = create_model("prob_psenn", input_shape=DIGITS, num_classes=3).cuda()
    x, y = torch.randn(16, *DIGITS, device="cuda"), torch.arange(3, device="cuda").repeat(6)[:16]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        terms = model.loss(model(x), x, y)
    terms["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval().fit_reference(x, y)
    assert torch.equal(model(x).logits, model(x).logits)
    info = model.uncertainty(x)
    assert torch.allclose(info["total"], info["aleatoric"] + info["epistemic"])
    assert info["explanation_percentile"].is_cuda
