"""Global explanations: the top-k surrogate of a black box, and SP-LIME's submodular pick."""

import itertools
import math

import numpy as np
import pandas as pd
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


class ThresholdModel(nn.Module):
    """Class 1 exactly where ``x[3] > 0``."""

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=torch.stack([torch.zeros_like(x[:, 3]), x[:, 3]], dim=1))


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
        "used": surrogate.used,
        "rules": surrogate.rules,
        "units": "model",
        "top_k": 3,
    }


@pytest.mark.parametrize("kind", ["tree", "sparse_linear"])
def test_the_surrogate_says_which_of_its_features_it_uses(tabular, kind):
    # given 4 features, a fit on a black box that reads only x[3] uses that one alone
    surrogate = fit_global_surrogate(
        ThresholdModel(), tabular, top_k=4, kind=kind, max_depth=3, l1_strength=0.05
    )
    assert surrogate.feature_names[0] == "x[3]" and len(surrogate.feature_names) == 4
    assert surrogate.used == ["x[3]"]
    assert surrogate.summary()["used"] == ["x[3]"]


class OneHotModel(nn.Module):
    """Class 1 exactly where the colour is red: feature 1 of the one-hot ``colour`` features
    0-2 (standardised), whatever the number in feature 3."""

    def forward(self, x: torch.Tensor) -> ModelOutput:
        red = x[:, 1]
        return ModelOutput(logits=torch.stack([torch.zeros_like(red), 10 * red], dim=1))


def test_tree_rules_on_a_one_hot_category_read_as_words():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 3, size=400)
    raw = np.concatenate([np.eye(3)[colour], rng.normal(50, 10, size=(400, 1))], axis=1)
    mean, std = raw.mean(0), raw.std(0)
    x = ((raw - mean) / std).astype(np.float32)
    names = ["colour=blue", "colour=red", "colour=green", "weight"]
    categorical = {"colour=blue": ("colour", "blue"), "colour=red": ("colour", "red")}
    categorical["colour=green"] = ("colour", "green")
    kwargs = {"top_k": 2, "max_depth": 1, "feature_names": names, "class_names": ["no", "yes"]}
    plain = fit_global_surrogate(OneHotModel(), x, feature_units=(mean, std), **kwargs)
    worded = fit_global_surrogate(
        OneHotModel(), x, feature_units=(mean, std), categorical=categorical, **kwargs
    )

    assert "|--- colour=red <= 0.50" in plain.rules  # the midpoint of 0 and 1, in data units
    assert worded.rules.splitlines() == [
        "|--- colour is not red",
        "|   |--- class: no",
        "|--- colour is red",
        "|   |--- class: yes",
    ]
    assert worded.fidelity == plain.fidelity == 1.0
    # in the model's units (no feature_units) the split means the same, so it reads the same
    model_units = fit_global_surrogate(OneHotModel(), x, categorical=categorical, **kwargs)
    assert model_units.rules == worded.rules


def _raw_units(width: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Means and stds of 20 features in unlike units (feature 3 around 50, in tens)."""
    mean = np.arange(width, dtype=np.float64) * 7.0
    mean[3] = 50.0
    std = np.linspace(0.5, 4.0, width)
    std[3] = 10.0
    return mean, std


def test_tree_rules_in_the_data_units_split_where_the_model_does(tabular):
    # the black box's class turns on x[3] alone at 0 (standardised): 50 in the data's units
    probe = ThresholdModel()
    names = [f"gene{i}" for i in range(20)]
    units = _raw_units()
    plain = fit_global_surrogate(probe, tabular, top_k=1, max_depth=1, feature_names=names)
    shown = fit_global_surrogate(
        probe,
        tabular,
        top_k=1,
        max_depth=1,
        feature_names=names,
        feature_units=units,
        class_names=["healthy", "ill"],
    )

    threshold = float(shown.rules.split("|--- gene3 <= ")[1].split()[0])
    assert abs(threshold - 50.0) < 0.5  # within 0.05 std of the model's split
    assert "class: healthy" in shown.rules and "class: ill" in shown.rules
    assert shown.summary()["units"] == "data" and plain.summary()["units"] == "model"
    # only the text changes: the fitted tree and its fidelity are the same
    np.testing.assert_array_equal(shown.predict(tabular), plain.predict(tabular))
    assert shown.fidelity == plain.fidelity == 1.0
    assert abs(float(plain.rules.split("|--- gene3 <= ")[1].split()[0])) < 0.05


def test_linear_rules_in_the_data_units_give_the_fitted_logit(tabular):
    mean, std = _raw_units()
    surrogate = fit_global_surrogate(
        TwoFeatureModel(),
        tabular,
        top_k=2,
        kind="sparse_linear",
        feature_names=[f"f{i}" for i in range(20)],
        feature_units=(mean, std),
        class_names=["no", "yes"],
    )
    line = surrogate.rules.splitlines()[0]
    assert line.startswith("class yes: ")
    tokens = line.removeprefix("class yes: ").split()
    bias, terms = float(tokens[0]), tokens[1:]
    weights = {terms[i + 2]: float(terms[i]) for i in range(0, len(terms), 3)}
    assert set(weights) == {"f3", "f7"}
    raw = tabular[:50] * std + mean  # the same points in the data's units
    written = bias + sum(w * raw[:, int(name[1:])] for name, w in weights.items())
    fitted = surrogate.estimator.decision_function(tabular[:50][:, surrogate.features])
    np.testing.assert_allclose(written, fitted, rtol=0.02, atol=0.05)  # rules print 3 digits


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
    with pytest.raises(ValueError, match="feature_units need 20"):
        fit_global_surrogate(model, tabular, feature_units=(np.zeros(3), np.ones(3)))
    with pytest.raises(ValueError, match="not of groups"):
        fit_global_surrogate(
            model, tabular, feature_units=_raw_units(), groups=np.arange(20) // 5, top_k=2
        )
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


def test_the_explain_stage_writes_a_csv_model_s_rules_by_column_in_its_units(tmp_path):
    """A model that learned ``hot = temperature > 300`` from a CSV: the surrogate's rules name
    the column and split near 300 (the standardised data would split near 0)."""
    from components.data.ingest import ingest
    from components.data.reader import read_split
    from components.data.spec import DataSpec
    from components.explain.config import ExplainConfig
    from components.explain.stage import explain_checkpoint
    from components.training.checkpoint import ModelSpec, save_checkpoint

    rng = np.random.default_rng(0)
    temperature = rng.uniform(280, 320, 400)
    frame = pd.DataFrame({"humidity": rng.uniform(0, 100, 400), "temperature": temperature})
    frame["state"] = np.where(temperature > 300, "hot", "cold")
    frame.to_csv(tmp_path / "weather.csv", index=False)
    path = ingest(DataSpec(source="csv", path=str(tmp_path / "weather.csv"), label_column="state"),
                  tmp_path / "cache").path  # fmt: skip
    torch.manual_seed(0)
    spec = ModelSpec("mlp", (2,), 2, tiny=True)
    model = spec.build()
    x, y = (torch.as_tensor(a) for a in read_split(path, "train"))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x).logits, y).backward()
        optimiser.step()
    save_checkpoint(tmp_path / "ckpt", model, spec, {})
    config = ExplainConfig(
        methods=("gradients",), eval_samples=8, surrogate_top_k=1, surrogate_depth=1, budget_s=60
    )

    surrogate = explain_checkpoint(tmp_path / "ckpt", path, config)["post_hoc"]["surrogate"]

    assert surrogate["features"] == ["temperature"] and surrogate["units"] == "data"
    threshold = float(surrogate["rules"].split("|--- temperature <= ")[1].split()[0])
    assert abs(threshold - 300) < 2.0
    assert "class: hot" in surrogate["rules"] and "class: cold" in surrogate["rules"]


def test_the_explain_stage_writes_a_tables_categories_as_words(tmp_path, monkeypatch):
    """A table's word column reaches the rules as words: ingest records its categories, the
    explain stage hands them to the surrogate with the data's units and class names."""
    import components.explain.stage as stage
    from components.data.ingest import ingest
    from components.data.spec import DataSpec
    from components.explain.config import ExplainConfig

    rng = np.random.default_rng(0)
    colour = rng.choice(["blue", "red", "green"], size=300)
    frame = pd.DataFrame({"colour": colour, "weight": rng.normal(50, 10, 300)})
    frame["verdict"] = np.where(colour == "red", "yes", "no")
    frame.to_csv(tmp_path / "table.csv", index=False)
    spec = DataSpec(source="csv", path=str(tmp_path / "table.csv"), label_column="verdict")
    path = ingest(spec, tmp_path).path
    # features: colour=blue, colour=green, colour=red, weight; the black box reads colour=red
    red = nn.Linear(4, 2)
    with torch.no_grad():
        red.weight.copy_(torch.tensor([[0.0, 0, -5, 0], [0, 0, 5, 0]]))
        red.bias.zero_()
    monkeypatch.setattr(stage, "load_trained", lambda checkpoint, dataset: (red, None))
    config = ExplainConfig(
        methods=("gradients",), eval_samples=8, robustness_samples=1, surrogate_samples=200
    )

    result = stage.explain_checkpoint(tmp_path / "ckpt", path, config, train_seconds=60)

    surrogate = result["post_hoc"]["surrogate"]
    assert surrogate["features"][0] == "colour=red" and surrogate["used"] == ["colour=red"]
    assert surrogate["rules"].startswith("|--- colour is not red\n|   |--- class: no\n")
    assert "|--- colour is red\n|   |--- class: yes" in surrogate["rules"]
