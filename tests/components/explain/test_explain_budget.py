"""The explain stage's cost: counts chosen to fit ``explain.budget_s``, a budget kept and
reported, a surrogate whose cost follows the feature groups, 224x224 images explained by every
method, and only the rows the stage needs read from the dataset."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from components.explain.config import POST_HOC_METHODS, ExplainConfig
from components.explain.posthoc.budget import (
    AUTO_FLOOR_S,
    AUTO_UNKNOWN_S,
    MIN_PERTURBATIONS,
    Clock,
    Counts,
    UnitCosts,
    choose_counts,
    resolve_budget,
)
from components.explain.posthoc.stage import LABELS, _Stage, budget_line, explain_post_hoc
from components.explain.posthoc.surrogate import feature_importance, fit_global_surrogate
from components.perturbation.groups import group_labels

SAMPLING = frozenset({"lime", "c_lime", "kernel_shap"})
REQUESTED = Counts(64, 8, 200, 256, 2048)
# Unit costs of a slow model: one sample explained and scored by the eight methods takes 2.7 s.
COSTS = UnitCosts(
    attribution={m: (0.5 if m in SAMPLING else 0.16) for m in POST_HOC_METHODS},
    metrics=0.05,
    forward_row=0.002,
    robustness_factor=12,
)
# What the whole stage may overrun its budget by: the unit of work started just before the
# deadline (one method on the chosen samples) and timer noise on a shared 2-core machine.
TOLERANCE_S = 4.0


class Tiny(nn.Module):
    """A 3x224x224 classifier that costs almost nothing per image (one strided conv)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 16, stride=16)
        self.head = nn.Linear(4, 3)
        self.rows = 0

    def forward(self, x):
        self.rows += len(x)
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def _images(count: int, side: int = 224) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(count, 3, side, side)).astype(np.float32)


def _cost(counts: Counts, groups: int = 64) -> float:
    scale = counts.perturbation_samples / REQUESTED.perturbation_samples
    return (
        counts.eval_samples * COSTS.evaluation(SAMPLING, scale)
        + counts.robustness_samples * COSTS.robustness(SAMPLING, scale)
        + COSTS.surrogate(counts.surrogate_probes, counts.surrogate_rows, groups)
    )


def test_auto_budget_is_the_training_time_with_a_floor():
    assert resolve_budget("auto", 95.0) == 95.0
    assert resolve_budget("auto", 3.0) == AUTO_FLOOR_S
    assert resolve_budget("auto", None) == AUTO_UNKNOWN_S
    assert resolve_budget(12, 95.0) == 12.0


def test_counts_that_fit_are_kept_and_tighter_budgets_cut_in_order():
    assert choose_counts(REQUESTED, COSTS, 1e6, sampling=SAMPLING, surrogate_groups=64) == (
        REQUESTED
    )
    previous = None
    for seconds in (3000, 400, 120, 30, 8):
        counts = choose_counts(REQUESTED, COSTS, seconds, sampling=SAMPLING, surrogate_groups=64)
        assert all(getattr(counts, k) <= getattr(REQUESTED, k) for k in REQUESTED.as_dict()), counts
        assert counts.robustness_samples <= counts.eval_samples
        assert _cost(counts) <= seconds, (seconds, counts)
        if previous is not None:
            assert counts.eval_samples <= previous.eval_samples
        previous = counts
    # 400 s: all but part of the robustness metrics fits (435 s in all, robustness 221 s)
    wide = choose_counts(REQUESTED, COSTS, 400, sampling=SAMPLING, surrogate_groups=64)
    assert wide.eval_samples == 64 and wide.surrogate_probes == 256
    assert wide.robustness_samples == 6
    # 8 s: fewer than 8 samples fit at 200 perturbations, so the sampling methods get fewer
    tight = choose_counts(REQUESTED, COSTS, 8, sampling=SAMPLING, surrogate_groups=64)
    assert tight.perturbation_samples < 200 and tight.robustness_samples == 0
    assert tight.eval_samples >= 1


def test_perturbations_stop_at_their_floor_and_the_surrogate_is_skipped_when_too_dear():
    counts = choose_counts(REQUESTED, COSTS, 1.0, sampling=SAMPLING, surrogate_groups=64)
    assert counts.perturbation_samples == MIN_PERTURBATIONS
    assert counts.eval_samples == 1 and counts.surrogate_probes == counts.surrogate_rows == 0


@pytest.mark.parametrize("side", [32, 64])
def test_surrogate_probing_costs_one_model_call_per_group_and_probe(side):
    """Counted through the model: the cost follows the groups, not the image size."""
    x = torch.as_tensor(_images(5, side))
    for patch, groups in ((side // 4, 16), (side // 8, 64)):
        model = Tiny()
        labels = group_labels(x, "patches", patch_size=patch)
        scores = feature_importance(model, x, groups=labels)
        assert scores.shape == (groups,)
        assert model.rows == 5 * (groups + 2)  # prediction, clean pass, one per group


def test_the_surrogate_reads_patch_means_and_names_the_patches():
    x = _images(40, 32)
    labels = group_labels(torch.as_tensor(x), "patches", patch_size=16)  # 4 patches
    surrogate = fit_global_surrogate(Tiny(), x, top_k=2, groups=labels, probe_samples=8)
    assert surrogate.importance.shape == (4,)
    assert set(surrogate.feature_names) <= {
        "x[:,0:16,0:16]",
        "x[:,0:16,16:32]",
        "x[:,16:32,0:16]",
        "x[:,16:32,16:32]",
    }
    assert surrogate.predict(x[:5]).shape == (5,)
    superpixels = torch.zeros(2, 3, 32, 32, dtype=torch.long)
    with pytest.raises(ValueError, match="shared by all inputs"):
        fit_global_surrogate(Tiny(), x[:2], top_k=1, groups=superpixels)


@pytest.fixture(scope="module")
def images_224():
    model = Tiny().eval()
    x = _images(3)
    config = ExplainConfig(
        eval_samples=2, robustness_samples=0, perturbation_samples=32, surrogate_samples=3
    )
    start = time.perf_counter()
    result = explain_post_hoc(
        model, x, np.zeros(3, int), config=config, num_shown=2, surrogate_data=(x, x), budget_s=40
    )
    return result, time.perf_counter() - start


def test_a_224_image_is_explained_by_every_method_within_its_budget(images_224):
    result, seconds = images_224
    assert seconds <= 40 + TOLERANCE_S  # measured: 9-18 s on a shared 2-core machine
    assert result["methods"] == list(POST_HOC_METHODS)
    assert all(a.shape == (2, 3, 224, 224) for a in result["attributions"].values())
    assert result["recommended"] in POST_HOC_METHODS
    assert result["ranking"]["num_samples"] == result["budget"]["chosen"]["eval_samples"] >= 1
    budget = result["budget"]
    assert budget["feature_groups"] == {"kind": "auto", "groups": 64, "per_sample": False}
    assert {"pilot", "attributions", "metrics"} <= set(budget["seconds"])
    assert result["surrogate"]["features"][0].startswith("x[:,")  # a 28x28 patch


def test_the_report_states_samples_time_and_skips(images_224, post_hoc_html):
    result = dict(images_224[0])
    result["budget"] = {**result["budget"], "skipped": ["robustness of lime"]}
    html = post_hoc_html(result, ["a", "b", "c"], (3, 224, 224))
    assert "Cost of the explanations" in html and "Time budget 40.0 s, spent" in html
    chosen = result["budget"]["chosen"]["eval_samples"]
    assert f"{chosen} of 2 test samples explained and scored" in html
    assert "Skipped to stay within the budget: robustness of lime." in html
    assert "64 groups (feature_groups=auto)" in html


def test_a_small_budget_is_kept_and_lowers_the_counts():
    """Unlimited, these counts take about 90 s here (16 samples, robustness on 4 of them at
    200 perturbations); with 10 s the stage measures, cuts, skips and says so."""
    model, x = Tiny().eval(), _images(16)
    config = ExplainConfig(
        eval_samples=16, robustness_samples=4, perturbation_samples=200, surrogate_samples=16
    )
    start = time.perf_counter()
    result = explain_post_hoc(
        model, x, np.zeros(16, int), config=config, num_shown=2, surrogate_data=(x, x), budget_s=10
    )
    seconds = time.perf_counter() - start
    budget = result["budget"]
    assert seconds <= 10 + TOLERANCE_S, budget_line(budget)
    assert budget["spent_s"] <= seconds
    chosen, requested = budget["chosen"], budget["requested"]
    assert chosen["eval_samples"] < requested["eval_samples"] == 16
    assert chosen["robustness_samples"] < requested["robustness_samples"] == 4
    assert budget["skipped"] and result["recommended"] in LABELS
    assert result["ranking"]["num_samples"] == chosen["eval_samples"]
    assert "budget 10.0 s" in budget_line(budget) and "eval_samples" in budget_line(budget)


def test_an_ample_budget_changes_no_result():
    """With everything fitting, the pilot leaves the results bit for bit as without a budget."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = np.random.default_rng(1).normal(size=(12, 1, 8, 8)).astype(np.float32)
    config = ExplainConfig(eval_samples=10, robustness_samples=1, perturbation_samples=24)
    run = [
        explain_post_hoc(model, x, np.zeros(12, int), config=config, num_shown=2, budget_s=b)
        for b in (None, 1000)
    ]
    assert run[1]["budget"]["chosen"] == run[0]["budget"]["requested"]
    assert run[0]["metrics"] == run[1]["metrics"] and run[0]["ranking"] == run[1]["ranking"]
    assert run[0]["surrogate"] == run[1]["surrogate"]
    assert math.isinf(float("inf"))


def test_the_explain_stage_reads_each_test_row_once_and_only_the_rows_it_needs(
    tmp_path, monkeypatch
):
    """The test split up to what the config needs, then only the surrogate's test rows beyond
    those, the train split up to the surrogate's rows: never a whole split (an image split is
    decoded on read), and no test row twice."""
    import components.explain.stage as stage
    from components.data.ingest import ingest
    from components.data.reader import load_meta, read_rows, read_split
    from components.data.spec import DataSpec
    from components.models import create_model

    path = ingest(DataSpec(source="digits"), tmp_path).path
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10, tiny=True)
    monkeypatch.setattr(stage, "load_trained", lambda checkpoint, dataset: (model, None))
    reads, row_reads, logs = [], [], []

    def recording_split(path, split, **kwargs):
        reads.append((split, kwargs.get("limit")))
        return read_split(path, split, **kwargs)

    def recording_rows(path, split, rows, **kwargs):
        row_reads.append((split, list(rows)))
        return read_rows(path, split, rows, **kwargs)

    monkeypatch.setattr(stage, "read_split", recording_split)
    monkeypatch.setattr(stage, "read_rows", recording_rows)
    config = ExplainConfig(
        methods=("gradients", "occlusion"),
        eval_samples=8,
        robustness_samples=1,
        surrogate_samples=100,
        budget_s=60,
    )
    result = stage.explain_checkpoint(
        tmp_path / "ckpt", path, config, train_seconds=12.5, log=lambda *a: logs.append(a)
    )
    assert reads == [("test", 64), ("train", 100)]  # 8 explained, 64 behind "because"
    assert row_reads == [("test", list(range(64, 100)))]  # the surrogate's test rows left
    assert [line[0].split(" ")[0] for line in logs] == ["explained", "post-hoc", "explain"]
    budget = result["post_hoc"]["budget"]
    assert budget["train_s"] == 12.5 and budget["stage_budget_s"] == 60
    assert budget["stage_s"] >= budget["spent_s"] > 0
    first, count = read_split(path, "test", limit=64)[0], load_meta(path).row_counts["test"]
    np.testing.assert_array_equal(
        stage._first_test_rows(path, first, 100, count), read_split(path, "test", limit=100)[0]
    )


def test_the_pilot_keeps_the_warnings_of_its_short_lime_fits_to_itself():
    """The pilot fits LIME's Lasso to 16 perturbations of 64 patches, which need not converge
    (scikit-learn warns); the pilot only times it, so the user must not see the warning."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(192, 3)).eval()
    with torch.no_grad():
        model[2].weight.mul_(10)  # a response 16 perturbations cannot fit (measured: it warns)
    x = _images(4, 32)
    config = ExplainConfig(
        methods=("lime",), eval_samples=4, robustness_samples=1, surrogate_samples=4
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = explain_post_hoc(
            model,
            x,
            np.zeros(4, int),
            config=config,
            num_shown=1,
            surrogate_data=(x, x),
            budget_s=60,
        )
    assert result["methods"] == ["lime"] and result["budget"]["chosen"]["eval_samples"] == 4


@pytest.mark.parametrize(("drift", "runs"), [(1.0, True), (2.0, False)])
def test_the_surrogate_is_skipped_when_the_methods_overran_by_more_than_it_has_left(drift, runs):
    """8 probes x 65 patches + 2 x 8 rows at 1 ms a row: 0.54 s estimated, 0.8 s left. After
    the methods took twice their estimates (a machine busier than during the pilot) the
    surrogate's estimate doubles too, and it no longer fits."""
    x = _images(8, 32)
    config = ExplainConfig()
    groups = group_labels(x, config.feature_groups, config.patch_size)
    costs = UnitCosts({"ig": 0.1}, metrics=0.01, forward_row=0.001, robustness_factor=12)
    stage = _Stage(Tiny().eval(), None, None, Clock(0.8))
    stage.drift = drift
    summary = stage.surrogate((x, x), x, groups, config, Counts(8, 0, 200, 8, 8), costs)
    assert (summary is not None) == runs
    assert stage.clock.skipped == ([] if runs else ["the global surrogate"])
