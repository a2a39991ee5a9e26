"""Explanation chooser: paired bootstrap ranking, and PGI picking the true linear attribution."""

import numpy as np
import pytest
import torch
from torch import nn

from components.evaluation.explanation_chooser import METRICS, choose_method, rank_methods


def scores(seed=0, n=60):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n)
    return {"a": base + 0.5, "b": base + 0.2 * rng.normal(size=n), "c": base - 0.5}


def test_ranking_cis_contain_the_means_and_are_deterministic_for_a_seed():
    ranking = rank_methods(scores(), higher_is_better=True, num_bootstrap=500, seed=3)
    assert [row["method"] for row in ranking] == ["a", "b", "c"]
    assert [row["rank"] for row in ranking] == [1, 2, 3]
    for row, name in zip(ranking, ["a", "b", "c"], strict=True):
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
        assert row["mean"] == pytest.approx(scores()[name].mean())
        assert row["num_samples"] == 60
    assert sum(row["p_best"] for row in ranking) == pytest.approx(1.0)
    assert ranking == rank_methods(scores(), higher_is_better=True, num_bootstrap=500, seed=3)
    lower = rank_methods(scores(), higher_is_better=False, num_bootstrap=500, seed=3)
    assert [row["method"] for row in lower] == ["c", "b", "a"]


def test_bootstrap_is_paired_and_ties_split_p_best():
    rng = np.random.default_rng(0)
    base = rng.normal(scale=10.0, size=40)  # large spread between samples
    # b beats a by 0.01 on every sample: certain when paired, invisible when not
    ranking = rank_methods({"a": base, "b": base + 0.01}, higher_is_better=True, seed=1)
    assert ranking[0]["method"] == "b" and ranking[0]["p_best"] == 1.0
    assert ranking[0]["ci_high"] - ranking[0]["ci_low"] > 1.0
    tie = rank_methods({"x": base, "y": base.copy()}, higher_is_better=True, num_bootstrap=50)
    assert [row["p_best"] for row in tie] == [0.5, 0.5]


def test_nan_samples_are_dropped_for_every_method_and_bad_input_is_rejected():
    values = {"a": np.array([1.0, np.nan, 3.0]), "b": np.array([0.0, 5.0, 1.0])}
    ranking = rank_methods(values, higher_is_better=True, num_bootstrap=20)
    assert ranking[0]["num_samples"] == 2
    assert {row["method"]: row["mean"] for row in ranking} == {"a": 2.0, "b": 0.5}
    with pytest.raises(ValueError, match="different numbers"):
        rank_methods({"a": [1.0, 2.0], "b": [1.0]}, higher_is_better=True)
    with pytest.raises(ValueError, match="empty"):
        rank_methods({}, higher_is_better=True)


def linear_model(d=10, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    model = nn.Linear(d, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(np.stack([w, -w])))
    return model, w, rng


@pytest.mark.parametrize("metric", ["pgi", "deletion"])
def test_choose_method_ranks_the_true_linear_attribution_above_a_random_one(metric):
    model, w, rng = linear_model()
    x = rng.normal(size=(150, 10)).astype(np.float32)
    attributions = {"random": rng.normal(size=x.shape), "linear": w * x}
    ranking = choose_method(model, x, attributions, metric=metric, k=3, num_bootstrap=200)
    assert ranking[0]["method"] == "linear" and ranking[0]["p_best"] > 0.95
    assert METRICS[metric][1] == (metric == "pgi")
    with pytest.raises(ValueError, match="metric"):
        choose_method(model, x, attributions, metric="nope")
