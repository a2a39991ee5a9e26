"""The ``sanity`` trust check (Adebayo et al. 2018): the cascade on a trained tiny ``cnn``, the
edge-detector control, exclusion from the recommendation, config errors, not-applicable cases,
and its report section."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from components.data.reader import load_meta, read_split
from components.evaluation.attribution_similarity import map_similarity, spearman
from components.explain.checks import sanity
from components.explain.checks.runner import CheckContext, run_checks
from components.explain.config import ExplainConfig
from components.models import create_model
from components.report import sanity_check_section
from components.report.figure_set import FigureSet
from components.report.posthoc_section import posthoc_parts


def _context(model, dataset, post_hoc, **settings) -> CheckContext:
    config = ExplainConfig(methods=("ig", "gradients"), checks=("sanity",), sanity=settings)
    return CheckContext(
        model=model,
        checkpoint=dataset,
        dataset_path=dataset,
        meta=load_meta(dataset) if dataset else SimpleNamespace(feature_shape=(30,)),
        config=config,
        explanations={"post_hoc": post_hoc},
        settings=settings,
    )


def _post_hoc() -> dict:
    rows = [{"method": "ig", "mean": 0.1}, {"method": "gradients", "mean": 0.2}]
    return {"methods": ["ig", "gradients"], "ranking": {"rows": rows}, "recommended": "ig"}


@pytest.fixture(scope="module")
def trained_cnn(digits_dataset, train_model):
    x, y = read_split(digits_dataset, "train", limit=300)
    torch.manual_seed(0)
    model = create_model("cnn", input_shape=(1, 8, 8), num_classes=10, tiny=True)
    return train_model(model, x, y, epochs=2, lr=0.02)


def test_gradients_change_and_the_edge_detector_is_flagged(trained_cnn, digits_dataset, tmp_path):
    post_hoc = _post_hoc()
    result = sanity.run(_context(trained_cnn, digits_dataset, post_hoc))
    final = result["summary"]["final_similarity"]
    # top first: the classifier (head.2) is randomised before the convolution
    assert result["layers"] == ["head.2", "features.0"]
    assert result["measure"] == "ssim"
    assert final["gradients"] < 0.2 and final["ig"] < 0.8
    assert final["edge_detector"] == pytest.approx(1.0)
    assert result["summary"]["control_flagged"] is True
    assert result["exclude_methods"] == []
    assert result["verdict"].startswith("pass")
    html = sanity_check_section.section(result, FigureSet(tmp_path))
    assert (tmp_path / "sanity_curves.png").exists() and (tmp_path / "sanity_maps.png").exists()
    assert html.count("<td>flagged</td>") == 1  # the control's row only


def test_a_method_above_the_threshold_is_excluded(trained_cnn, digits_dataset, tmp_path):
    post_hoc = _post_hoc()
    context = _context(trained_cnn, digits_dataset, post_hoc, threshold=0.3, control=False)
    result = run_checks(context, ["sanity"])["sanity"]
    assert result["exclude_methods"] == ["ig"]  # IG keeps the input's structure (about 0.5)
    assert post_hoc["recommended"] == "gradients" and post_hoc["excluded"] == ["ig"]
    html = "".join(
        posthoc_parts(post_hoc, (1, 8, 8), [str(i) for i in range(10)], FigureSet(tmp_path))
    )
    assert "excluded by the trust checks: ig (sanity check: SSIM" in html


def test_similarity_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 8, 8))
    same = map_similarity(a, -3 * a, image=True)  # absolute maps: sign and scale do not count
    np.testing.assert_allclose(same["spearman"], 1.0)
    np.testing.assert_allclose(same["ssim"], 1.0)
    ranks = np.arange(10.0)[None]
    np.testing.assert_allclose(spearman(ranks, ranks[:, ::-1] ** 3), -1.0)
    assert spearman(ranks, np.zeros((1, 10)))[0] == 0.0  # a constant map ranks nothing


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"sampels": 4}, "explain.sanity: unknown key(s) ['sampels']"),
        ({"samples": 0}, "explain.sanity.samples"),
        ({"threshold": 1.5}, "explain.sanity.threshold"),
        ({"threshold": "high"}, "explain.sanity.threshold"),
        ({"similarity": "hog"}, "explain.sanity.similarity"),
        ({"control": "yes"}, "explain.sanity.control"),
    ],
)
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ValueError) as error:
        ExplainConfig(checks=("sanity",), sanity=settings)
    assert key in str(error.value)


def test_not_applicable_cases_say_why():
    no_methods = sanity.run(_context(None, None, {}))
    assert no_methods["verdict"] == (
        "not applicable: no post-hoc method ran (explain.methods is empty)"
    )
    tabular_ssim = sanity.run(_context(None, None, _post_hoc(), similarity="ssim"))
    assert tabular_ssim["verdict"].startswith("not applicable: explain.sanity.similarity=ssim")
    assert "exclude_methods" not in tabular_ssim
