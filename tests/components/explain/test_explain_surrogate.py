"""Global explanations: the top-k surrogate of a black box, and SP-LIME's submodular pick."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from components.explain.posthoc.sp_lime import submodular_pick
from components.explain.posthoc.surrogate import (
    default_feature_names,
    feature_importance,
    fit_global_surrogate,
)
from components.models import create_model
from components.models.base import ModelOutput


class TwoFeatureModel(nn.Module):
    """A 20-feature black box whose class depends only on ``3 x[3] - 2 x[7]``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        score = self.scale * (3 * x[:, 3] - 2 * x[:, 7])
        return ModelOutput(logits=torch.stack([torch.zeros_like(score), score], dim=1))


@pytest.fixture
def tabular() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(600, 20)).astype(np.float32)


@pytest.mark.parametrize("importance", ["removal", "permutation"])
def test_probing_finds_the_features_the_black_box_uses(tabular, importance):
    scores = feature_importance(TwoFeatureModel(), tabular[:200], method=importance)
    assert scores.shape == (20,)
    assert set(np.argsort(-scores)[:2]) == {3, 7}
    assert scores[3] > scores[7] > 0
    others = np.delete(scores, [3, 7])
    np.testing.assert_allclose(others, 0.0, atol=1e-7)


@pytest.mark.parametrize(("kind", "fidelity"), [("tree", 0.85), ("sparse_linear", 0.95)])
def test_surrogate_on_the_top_features_mimics_the_black_box(tabular, kind, fidelity):
    surrogate = fit_global_surrogate(TwoFeatureModel(), tabular, top_k=2, kind=kind, max_depth=4)
    assert surrogate.features == [3, 7]
    assert surrogate.feature_names == ["x[3]", "x[7]"]
    assert surrogate.fidelity >= fidelity and surrogate.train_fidelity >= fidelity
    assert "x[3]" in surrogate.rules
    predicted = surrogate.predict(tabular[:10])
    assert predicted.shape == (10,)


def test_tree_rules_are_sklearn_text_and_the_summary_feeds_the_report(tabular):
    surrogate = fit_global_surrogate(
        TwoFeatureModel(),
        tabular,
        top_k=3,
        max_depth=2,
        feature_names=[f"gene{i}" for i in range(20)],
    )
    assert "|--- gene3 <=" in surrogate.rules and "class: 1" in surrogate.rules
    summary = surrogate.summary()
    assert summary == {
        "kind": "tree",
        "fidelity": surrogate.fidelity,
        "features": surrogate.feature_names,
        "rules": surrogate.rules,
        "top_k": 3,
    }


def test_surrogate_of_an_image_model_with_held_out_data():
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=3, tiny=True)
    images = np.random.default_rng(1).normal(size=(120, 1, 8, 8)).astype(np.float32)
    surrogate = fit_global_surrogate(
        model, images[:90], x_holdout=images[90:], top_k=5, kind="sparse_linear", probe_samples=32
    )
    assert len(surrogate.features) == 5 and surrogate.feature_names[0].startswith("x[0,")
    assert surrogate.importance.shape == (64,)
    assert surrogate.features == np.argsort(-surrogate.importance, kind="stable")[:5].tolist()
    # Fidelity is the agreement with the black box on the held-out images, not the fitted ones.
    with torch.no_grad():
        black_box = model.eval()(torch.from_numpy(images[90:])).logits.argmax(1).numpy()
    agreement = float(np.mean(surrogate.predict(images[90:]) == black_box))
    assert surrogate.fidelity == agreement
    assert surrogate.rules.startswith("class ")


def test_default_feature_names():
    assert default_feature_names((3,)) == ["x[0]", "x[1]", "x[2]"]
    assert default_feature_names((2, 1, 2)) == ["x[0,0,0]", "x[0,0,1]", "x[1,0,0]", "x[1,0,1]"]


def test_surrogate_rejects_bad_arguments(tabular):
    model = TwoFeatureModel()
    with pytest.raises(ValueError, match="unknown kind"):
        fit_global_surrogate(model, tabular, kind="forest")
    with pytest.raises(ValueError, match="top_k"):
        fit_global_surrogate(model, tabular, top_k=21)
    with pytest.raises(ValueError, match="feature_names"):
        fit_global_surrogate(model, tabular, feature_names=["a"])
    with pytest.raises(ValueError, match="unknown importance"):
        feature_importance(model, tabular, method="shap")


# --- SP-LIME ---------------------------------------------------------------------------------

# Rows are samples, columns features. Sample 2 covers the most; sample 0 is the second best on its
# own but redundant with sample 2, so the second pick must be sample 3.
W = np.array(
    [
        [1.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [1.0, 1.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def test_submodular_pick_prefers_new_coverage_over_redundant_samples():
    pick = submodular_pick(-W, budget=2)  # signs do not matter: |W| is used
    np.testing.assert_allclose(pick.importance, np.sqrt([2.0, 2.0, 2.0, 1.0]))
    assert pick.indices == [2, 3]
    np.testing.assert_allclose(pick.coverage, [3 * math.sqrt(2), 3 * math.sqrt(2) + 1])
    total = 3 * math.sqrt(2) + 1
    np.testing.assert_allclose(pick.coverage_fraction, [3 * math.sqrt(2) / total, 1.0])


def test_submodular_pick_picks_each_sample_once_and_ties_go_to_the_lowest_index():
    pick = submodular_pick(W, budget=4)
    assert pick.indices == [2, 3, 0, 1]  # the last two add nothing: lowest index first
    assert pick.coverage[2] == pick.coverage[3] == pick.coverage[1]


def test_submodular_pick_sparsifies_dense_explanations_with_top_k():
    dense = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.7], [0.5, 0.5, 0.5]])
    assert submodular_pick(dense, budget=1).indices == [0]  # everything covers everything
    pick = submodular_pick(dense, budget=2, top_k=1)
    assert pick.indices == [0, 1] and pick.coverage_fraction[-1] == pytest.approx(1.0)


def test_greedy_pick_is_within_1_minus_1_over_e_of_the_best():
    rng = np.random.default_rng(3)
    for _ in range(20):
        weights = rng.random((8, 6)) * (rng.random((8, 6)) < 0.3)
        pick = submodular_pick(weights, budget=3)
        importance = pick.importance
        best = max(
            importance[(weights[list(s)] > 0).any(0)].sum()
            for s in itertools.combinations(range(8), 3)
        )
        assert pick.coverage[-1] >= (1 - 1 / math.e) * best - 1e-12
        assert np.all(np.diff(pick.coverage) >= 0) and len(set(pick.indices)) == 3


def test_submodular_pick_rejects_bad_budget_or_top_k():
    with pytest.raises(ValueError, match="budget"):
        submodular_pick(W, budget=5)
    with pytest.raises(ValueError, match="top_k"):
        submodular_pick(W, budget=1, top_k=0)
