"""Uncertainty metrics: entropy decomposition, AUROCs, OOD noise; Prob-PSENN on digits."""

import math

import numpy as np
import pytest
import torch

from components.data.ingest import ingest
from components.data.reader import read_split
from components.data.spec import DataSpec
from components.evaluation.uncertainty import (
    gaussian_noise_like,
    ood_auroc,
    predictive_uncertainty,
    uncertainty_auroc,
)
from components.models import create_model


def test_predictive_uncertainty_closed_form():
    samples = np.array(
        [
            [[0.5, 0.5], [0.5, 0.5]],  # both samples unsure: all aleatoric
            [[1.0, 0.0], [0.0, 1.0]],  # confident samples that disagree: all epistemic
            [[1.0, 0.0], [1.0, 0.0]],  # certain
        ]
    )
    parts = predictive_uncertainty(samples)
    np.testing.assert_allclose(parts["total"], [math.log(2), math.log(2), 0.0], atol=1e-12)
    np.testing.assert_allclose(parts["aleatoric"], [math.log(2), 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(parts["epistemic"], [0.0, math.log(2), 0.0], atol=1e-12)


def test_predictive_uncertainty_identities_on_random_samples():
    logits = torch.randn(40, 9, 5, generator=torch.Generator().manual_seed(1))
    parts = predictive_uncertainty(torch.softmax(logits, -1))
    np.testing.assert_allclose(parts["total"], parts["aleatoric"] + parts["epistemic"])
    assert all((v >= 0).all() and v.shape == (40,) for v in parts.values())
    assert (parts["total"] <= math.log(5) + 1e-12).all()


def test_predictive_uncertainty_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, S, C\)"):
        predictive_uncertainty(np.ones((3, 2)))
    with pytest.raises(ValueError, match="probability"):
        predictive_uncertainty(np.ones((3, 2, 2)))


def test_uncertainty_auroc_ranks_wrong_predictions():
    scores = [0.1, 0.2, 0.9, 0.8]
    assert uncertainty_auroc(scores, [False, False, True, True]) == 1.0
    assert uncertainty_auroc(scores, [True, True, False, False]) == 0.0
    assert uncertainty_auroc([0.1, 0.5, 0.3], [False, True, True]) == 1.0
    assert math.isnan(uncertainty_auroc(scores, [False] * 4))
    with pytest.raises(ValueError, match="rows"):
        uncertainty_auroc(scores, [True])


def test_ood_auroc_separates_the_two_sets():
    assert ood_auroc([0.1, 0.2], [0.5, 0.6, 0.7]) == 1.0
    assert ood_auroc([0.1, 0.6], [0.5, 0.7]) == pytest.approx(0.75)


def test_gaussian_noise_like_is_seeded_standard_noise_of_the_same_shape():
    x = np.zeros((2000, 1, 8, 8), np.float32)
    noise = gaussian_noise_like(x, seed=3)
    assert noise.shape == x.shape and noise.dtype == np.float32
    np.testing.assert_array_equal(noise, gaussian_noise_like(torch.from_numpy(x), seed=3))
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1) < 0.01


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = ingest(DataSpec(source="digits"), tmp_path_factory.mktemp("digits")).path
    return {s: [torch.from_numpy(a) for a in read_split(path, s)] for s in ("train", "test")}


@pytest.mark.slow
def test_prob_psenn_on_digits_knows_when_it_is_wrong_and_when_inputs_are_noise(digits, train_model):
    torch.manual_seed(0)
    model = create_model("prob_psenn", input_shape=(1, 8, 8), num_classes=10)
    train_model(model, *digits["train"], epochs=60, lr=5e-3)  # the full recipe runs 150 epochs
    x_test, y_test = digits["test"]
    model.fit_reference(*digits["train"])
    info = model.uncertainty(x_test)
    wrong = info["prediction"] != y_test
    assert 1 - wrong.float().mean().item() >= 0.92  # 0.94 measured at 60 epochs
    assert info["total"][wrong].mean() > info["total"][~wrong].mean()
    assert uncertainty_auroc(info["total"], wrong) >= 0.85  # 0.93 measured
    noise = model.uncertainty(torch.from_numpy(gaussian_noise_like(x_test, seed=0)))
    assert noise["total"].mean() > 2 * info["total"].mean()
    assert ood_auroc(info["total"], noise["total"]) >= 0.9
    assert noise["explanation_percentile"].mean() > info["explanation_percentile"].mean()
