"""The explain stage's post-hoc part: every method scored the same way and ranked."""

from __future__ import annotations

import re
from html import escape

import numpy as np
import pytest
import torch
from torch import nn

from components.explain.config import ExplainConfig
from components.explain.posthoc.stage import LABELS, explain_post_hoc
from components.report.posthoc_data import budget_sentences

GRADIENT_BASED = {"ig", "gradients", "gradient_x_input", "smoothgrad"}
SAMPLED = {"lime", "c_lime", "kernel_shap"}


class Linear(nn.Module):
    """Logits ``[-z, z]`` with ``z = w.x + b``: each class logit is linear in x."""

    def __init__(self, w: np.ndarray, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32), requires_grad=False)
        self.b = b

    def forward(self, x):
        z = x @ self.w + self.b
        return torch.stack([-z, z], dim=1)


@pytest.fixture(scope="module")
def linear_result():
    rng = np.random.default_rng(0)
    w = np.array([3.0, -2.0, 1.5, 0.0, -1.0, 0.5, 2.5, -0.2])
    x = rng.normal(size=(48, 8)).astype(np.float32)
    model = Linear(w, 0.1)
    y = (x @ w + 0.1 > 0).astype(int)
    config = ExplainConfig(methods=tuple(LABELS), perturbation_samples=200, robustness_samples=2)
    return explain_post_hoc(model, x, y, config=config, num_shown=2)


def test_the_chooser_prefers_gradient_methods_for_a_linear_model(linear_result):
    """Ranked by the local-approximation loss in a Gaussian neighbourhood (Han et al. 2022),
    gradients and SmoothGrad are exact for a linear model; C-LIME, their perturbation twin,
    converges to the same (ties go to the deterministic method); the binary-neighbourhood
    methods approximate w*x, which does not predict Gaussian perturbations."""
    ranking = linear_result["ranking"]
    assert ranking["metric"] == "infidelity_gaussian" and not ranking["higher_is_better"]
    rows = {row["method"]: row for row in ranking["rows"]}
    assert linear_result["recommended"] in GRADIENT_BASED
    best = ranking["rows"][0]
    assert best["mean"] == pytest.approx(0.0, abs=1e-6)
    for method in ("lime", "kernel_shap", "occlusion"):
        assert rows[method]["ci_low"] > best["ci_high"] + 0.05, method


def test_every_method_is_scored_with_every_metric(linear_result):
    metrics = linear_result["metrics"]
    assert set(metrics) == set(LABELS)
    for scores in metrics.values():
        assert {"pgi", "pgu", "fid_plus", "fid_minus", "deletion_auc", "infidelity"} <= set(scores)
        assert {"sensitivity_max", "ris", "sparseness", "entropy", "completeness_gap"} <= set(
            scores
        )
    # IG is exact for a linear model: complete up to float error.
    assert metrics["ig"]["completeness_gap"] < 1e-3
    assert linear_result["attributions"]["ig"].shape == (2, 8)


def test_the_report_shows_the_ranking(linear_result, tmp_path, post_hoc_html):
    html = post_hoc_html(linear_result, ["neg", "pos"], (8,))
    label = LABELS[linear_result["recommended"]]
    assert f"Recommended for this model and data: {label}" in html
    rows = linear_result["ranking"]["rows"]
    # Ranked best first: lowest mean local-approximation loss, ranks 1, 2, ...
    means = [row["mean"] for row in rows]
    assert means == sorted(means) and {row["method"] for row in rows} == set(LABELS)
    assert [row["rank"] for row in rows] == list(range(1, len(LABELS) + 1))
    # The report's ranking table lists the methods in that order.
    ranking_table = html.split("<h3>Choosing a method</h3>", 1)[1].split("</table>", 1)[0]
    shown = [
        re.findall(r"<td[^>]*>(.*?)</td>", row)[:2]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", ranking_table.split("<tbody>", 1)[1])
    ]
    assert shown == [[str(row["rank"]), escape(LABELS[row["method"]])] for row in rows]
    assert (tmp_path / "figures" / "posthoc_ranking.png").is_file()


def test_a_word_column_is_removed_as_one_feature():
    """Removing one 0/1 feature of a word column alone makes a row with two words or none;
    the removal-based methods remove the column's features together. Occlusion of a linear
    model then gives the column w.x over its features, spread evenly over them."""
    rng = np.random.default_rng(0)
    colour = np.eye(3)[rng.integers(0, 3, size=40)]
    x = np.concatenate([colour - colour.mean(0), rng.normal(size=(40, 1))], axis=1)
    x = x.astype(np.float32)
    w = np.array([2.0, -1.0, 0.5, 3.0])
    names = ["colour=blue", "colour=red", "colour=green", "weight"]
    categorical = {name: ("colour", name.split("=")[1]) for name in names[:3]}
    config = ExplainConfig(methods=("occlusion", "kernel_shap"), perturbation_samples=64)
    result = explain_post_hoc(
        Linear(w, 0.0),
        x,
        (x @ w > 0).astype(int),
        config=config,
        num_shown=2,
        feature_names=names,
        categorical=categorical,
    )
    groups = result["budget"]["feature_groups"]
    assert groups["groups"] == 2 and groups["by_column"]
    for method in ("occlusion", "kernel_shap"):
        values = np.asarray(result["attributions"][method])
        np.testing.assert_allclose(values[:, 0], values[:, 1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(values[:, 1], values[:, 2], rtol=1e-5, atol=1e-6)
    shown = np.asarray(result["inputs"])
    sign = np.where(shown @ w > 0, 1.0, -1.0)  # the predicted class's logit is +-w.x
    occlusion = np.asarray(result["attributions"]["occlusion"])
    np.testing.assert_allclose(
        occlusion[:, :3].sum(1), sign * (shown[:, :3] @ w[:3]), rtol=1e-4, atol=1e-5
    )
    without = explain_post_hoc(
        Linear(w, 0.0), x, (x @ w > 0).astype(int), config=config, num_shown=2
    )
    assert without["budget"]["feature_groups"]["groups"] == 4  # no words named: per feature
    assert (
        "Features removed and ranked: 2 groups (feature_groups=auto: one per column, a word "
        "column's 0/1 features together)."
    ) in budget_sentences(result["budget"])
