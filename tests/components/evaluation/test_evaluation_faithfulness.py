"""Faithfulness metrics: hand-computed PGI/PGU/Fid, robust Fid limits, RISE curves, infidelity."""

import numpy as np
import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from torch import nn

from components.evaluation.faithfulness import (
    Removal,
    deletion_auc,
    deletion_curve,
    fidelity,
    infidelity,
    insertion_auc,
    insertion_curve,
    mean_score,
    pgi,
    pgu,
    robust_fidelity,
)
from components.models.base import ModelOutput

W = np.array([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 0.5]])
B = np.array([0.1, -0.2])
X = np.array([[1.0, 0.5, -1.0, 2.0], [-1.0, 2.0, 0.5, -0.5]], dtype=np.float32)
ATTR = np.array([[0.1, -3.0, 0.2, 1.0], [2.0, 0.3, -0.1, -1.5]], dtype=np.float32)


class Linear(nn.Module):
    """logits = x.flatten() @ W.T + b, returned as a ModelOutput."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(torch.as_tensor(weight))
            self.fc.bias.copy_(torch.as_tensor(bias))

    def forward(self, x):
        return ModelOutput(logits=self.fc(x.flatten(1)))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def by_hand(x):
    """Target-class probabilities of the clean input, without the top-2, and with only the top-2."""
    probs = softmax(x @ W.T + B)
    target = probs.argmax(axis=1)
    # top-2 by |attr|: sample 0 -> features 1, 3; sample 1 -> features 0, 3
    top = np.array([[0, 1, 0, 1], [1, 0, 0, 1]], dtype=bool)
    without, only = np.where(top, 0.0, x), np.where(top, x, 0.0)
    rows = np.arange(len(x))
    pick = lambda p: p[rows, target]  # noqa: E731
    return (
        target,
        pick(probs),
        pick(softmax(without @ W.T + B)),
        pick(softmax(only @ W.T + B)),
        [softmax(z @ W.T + B).argmax(1) for z in (without, only)],
    )


def test_pgi_pgu_and_fidelity_match_hand_computation():
    model = Linear(W, B)
    target, p, p_without, p_only, (pred_without, pred_only) = by_hand(X.astype(np.float64))
    np.testing.assert_allclose(pgi(model, X, ATTR, 2), np.abs(p - p_without), atol=1e-6)
    np.testing.assert_allclose(pgu(model, X, ATTR, 2), np.abs(p - p_only), atol=1e-6)
    fid = fidelity(model, X, ATTR, 2)
    np.testing.assert_allclose(fid["fid_plus"], p - p_without, atol=1e-6)
    np.testing.assert_allclose(fid["fid_minus"], p - p_only, atol=1e-6)
    np.testing.assert_allclose(fid["fid_delta"], p_only - p_without, atol=1e-6)
    acc = fidelity(model, X, ATTR, 2, version="acc")
    np.testing.assert_array_equal(acc["fid_plus"], 1.0 - (pred_without == target))
    np.testing.assert_array_equal(acc["fid_minus"], 1.0 - (pred_only == target))
    # a 0/1 explanation mask (k=None) is the same explanation
    mask = np.array([[0, 1, 0, 1], [1, 0, 0, 1]], dtype=np.float32)
    np.testing.assert_array_equal(fidelity(model, X, mask)["fid_plus"], fid["fid_plus"])


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))


@pytest.mark.parametrize("version", ["prob", "acc"])
def test_robust_fidelity_with_alpha1_one_alpha2_zero_is_plain_fidelity(version):
    model = tiny_cnn()
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    attr = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    plain = fidelity(model, x, attr, 10, version=version)
    robust = robust_fidelity(model, x, attr, 10, alpha1=1.0, alpha2=0.0, version=version)
    for key in plain:
        np.testing.assert_array_equal(robust[key], plain[key])
    # nothing removed: both robust scores vanish
    none = robust_fidelity(model, x, attr, 10, alpha1=0.0, alpha2=1.0, version=version)
    np.testing.assert_array_equal(none["fid_plus"], 0.0)
    np.testing.assert_array_equal(none["fid_minus"], 0.0)


def test_robust_fidelity_is_seeded_and_partial():
    model = tiny_cnn()
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    attr = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    first = robust_fidelity(model, x, attr, 10, num_samples=8, seed=3)
    again = robust_fidelity(model, x, attr, 10, num_samples=8, seed=3)
    np.testing.assert_array_equal(first["fid_delta"], again["fid_delta"])
    plain = fidelity(model, x, attr, 10)
    assert not np.array_equal(first["fid_plus"], plain["fid_plus"])
    noisy = Removal("noise", num_draws=3)
    assert np.isfinite(
        robust_fidelity(model, x, attr, 10, num_samples=4, removal=noisy)["fid_delta"]
    ).all()


def test_pgi_random_replacements_are_seeded_and_additive_noise_of_zero_changes_nothing():
    model = tiny_cnn()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    attr = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    noisy = Removal("noise", num_draws=4)
    np.testing.assert_array_equal(
        pgi(model, x, attr, 8, removal=noisy, seed=1), pgi(model, x, attr, 8, removal=noisy, seed=1)
    )
    still = Removal("additive_noise", noise_std=0.0, num_draws=2)
    np.testing.assert_array_equal(pgi(model, x, attr, 8, removal=still), 0.0)
    assert pgi(model, x, attr, 64).shape == (5,)
    with pytest.raises(ValueError, match="shape"):
        pgi(model, x, attr[:, :, :4], 8)


def two_class_linear(d=10, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    return Linear(np.stack([w, -w]), np.zeros(2)), w, rng


def test_deletion_and_insertion_prefer_the_true_linear_attribution():
    model, w, rng = two_class_linear()
    x = rng.normal(size=(30, 10)).astype(np.float32)
    # class 0's logit margin is 2 w.x: w * x is each feature's exact contribution
    true = (w * x).astype(np.float32)
    kwargs = {"steps": 10, "target": 0}
    deleted, reversed_deleted = (
        deletion_auc(model, x, true, **kwargs),
        deletion_auc(model, x, -true, **kwargs),
    )
    inserted, reversed_inserted = (
        insertion_auc(model, x, true, **kwargs),
        insertion_auc(model, x, -true, **kwargs),
    )
    assert np.all(deleted <= reversed_deleted + 1e-7) and deleted.mean() < reversed_deleted.mean()
    assert (
        np.all(inserted >= reversed_inserted - 1e-7) and inserted.mean() > reversed_inserted.mean()
    )
    curve = deletion_curve(model, x, true, **kwargs)
    p_clean = softmax(x @ np.stack([w, -w]).T)[:, 0]
    assert curve.shape == (30, 11)
    np.testing.assert_allclose(curve[:, 0], p_clean, atol=1e-6)
    np.testing.assert_allclose(curve[:, -1], 0.5, atol=1e-6)  # everything removed: logits 0
    np.testing.assert_allclose(insertion_curve(model, x, true, **kwargs)[:, -1], p_clean, atol=1e-6)


def test_pgi_ranks_the_true_linear_attribution_above_a_random_one():
    model, w, rng = two_class_linear(seed=1)
    x = rng.normal(size=(200, 10)).astype(np.float32)
    true_gap = pgi(model, x, w * x, 3)
    random_gap = pgi(model, x, rng.normal(size=x.shape), 3)
    assert mean_score(true_gap) > mean_score(random_gap)
    assert mean_score([1.0, np.nan, 3.0]) == 2.0


@pytest.mark.parametrize("perturbation", ["gaussian", "removal"])
def test_infidelity_equals_captum_on_the_same_perturbations(perturbation):
    model = tiny_cnn()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    attr = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = infidelity(
        model, x, attr, perturbation=perturbation, noise_std=0.2, n_perturb_samples=5, seed=7
    )

    generator = torch.Generator().manual_seed(7)

    def perturb(inputs):
        if perturbation == "gaussian":
            noise = torch.randn(inputs.shape, generator=generator) * 0.2
            return noise, inputs - noise
        mask = torch.bernoulli(torch.full(inputs.shape, 0.5), generator=generator)
        return mask, inputs * (1 - mask)

    target = model(x).argmax(dim=1)
    expected = captum_infidelity(model, perturb, x, attr, target=target, n_perturb_samples=5)
    np.testing.assert_array_equal(ours, expected.double().numpy())


def test_infidelity_of_exact_linear_attributions_is_zero():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 6))
    model = Linear(weight, np.zeros(3))
    x = rng.normal(size=(8, 6)).astype(np.float32)
    w0 = weight[0].astype(np.float32)
    # removal to zero: the removed features' w * x sum to the logit drop exactly
    removal = infidelity(model, x, w0 * x, target=0, n_perturb_samples=20)
    # Gaussian I: the gradient w satisfies I . w = f(x) - f(x - I)
    gaussian = infidelity(model, x, np.broadcast_to(w0, x.shape), target=0, perturbation="gaussian")
    np.testing.assert_allclose(removal, 0.0, atol=1e-9)
    np.testing.assert_allclose(gaussian, 0.0, atol=1e-9)
    assert infidelity(model, x, -w0 * x, target=0).min() > 0.01
