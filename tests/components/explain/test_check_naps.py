"""The ``naps`` trust check: NAP mining, recall, exclusivity and the property check on a
hand-built ReLU network whose patterns are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from components.explain.checks import naps
from components.explain.checks.naps.patterns import (
    ACTIVE,
    FREE,
    INACTIVE,
    non_exclusive_pairs,
    satisfaction,
)
from components.explain.config import ExplainConfig


def _hand_built() -> nn.Sequential:
    """h = relu(x1), relu(-x1), relu(x2); logit0 = 2 h1, logit1 = 2 h2 + h3."""
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
        net[2].weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 1.0]]))
    return net


def _points(x1: float, x2_signs: list[float], label: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[x1, s] for s in x2_signs], np.float32)
    return x, np.full(len(x), label, np.int64)


def _stack(*parts):
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _train():
    return _stack(
        _points(2.0, [1.0] * 99 + [-1.0], 0),  # h3 on for 99 of 100 class-0 inputs
        _points(-2.0, [1.0] * 50 + [-1.0] * 50, 1),  # h3 on for half of class 1
        _points(-2.0, [-1.0], 0),  # labelled 0, predicted 1: not mined
    )


def _test():
    return _stack(
        _points(1.0, [1.0] * 7 + [-1.0] * 3, 0),
        _points(0.1, [1.0], 0),  # satisfies NAP 0 (h3 on) but logit1 = 1 > logit0 = 0.2
        _points(-1.0, [1.0, -1.0, 1.0, -1.0, 1.0], 1),
    )


def test_naps_closed_form_patterns_recall_and_violations():
    result = naps.analyse(_hand_built(), _train(), _test(), delta=0.99)
    assert result["layer"] == "1"
    np.testing.assert_array_equal(
        result["patterns"], [[ACTIVE, INACTIVE, ACTIVE], [INACTIVE, ACTIVE, FREE]]
    )
    assert result["mined_from"] == [100, 100]
    assert result["recall"] == [8 / 11, 1.0]
    assert result["violations"] == [1, 0]
    assert result["coverage"] == pytest.approx(13 / 16)
    assert result["non_exclusive"] == [] and result["pairs"] == 1
    assert result["verdict"].startswith("flag:") and "1 test inputs" in result["verdict"]
    assert result["summary"]["fixed_active"] == [2, 1]


def test_naps_delta_one_frees_a_neuron_that_flips_once():
    result = naps.analyse(_hand_built(), _train(), _test(), delta=1.0)
    np.testing.assert_array_equal(result["patterns"][0], [ACTIVE, INACTIVE, FREE])
    assert result["recall"] == [1.0, 1.0]  # h3 no longer required: every class-0 input fits


def test_naps_exclusivity_on_a_constructed_pair():
    patterns = np.array([[1, 0, -1], [0, 1, 1], [1, 1, 0]], np.int8)
    counts = np.array([5, 5, 5])
    assert non_exclusive_pairs(patterns, counts) == [(0, 2), (1, 2)]
    witness = np.array([[True, True, False]])  # satisfies patterns 0 and 2 at once
    np.testing.assert_array_equal(satisfaction(witness, patterns, counts), [[True, False, True]])


def test_naps_not_applicable_without_relu_or_with_a_shared_relu():
    tanh = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    result = naps.analyse(tanh, _train(), _test())
    assert result["verdict"].startswith("not applicable: the model has no nn.ReLU")
    relu = nn.ReLU()
    shared = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    assert "ran 2 times" in naps.analyse(shared, _train(), _test())["verdict"]
    named = naps.analyse(_hand_built(), _train(), _test(), layer="0")
    assert named["verdict"].startswith("not applicable: explain.naps.layer='0'")


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"delta": 0.5}, "explain.naps.delta"),
        ({"delta": 1.01}, "explain.naps.delta"),
        ({"delta": "high"}, "explain.naps.delta"),
        ({"layer": ""}, "explain.naps.layer"),
        ({"layer": 3}, "explain.naps.layer"),
        ({"max_rows": 0}, "explain.naps.max_rows"),
        ({"threshold": 0.9}, "explain.naps.threshold"),
    ],
)
def test_naps_config_errors_name_the_key(settings, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        ExplainConfig(checks=("naps",), naps=settings)


def test_naps_report_section_shows_the_table_and_the_heatmap(tmp_path):
    from components.report.figure_set import FigureSet
    from components.report.naps_check_section import section

    result = {**naps.analyse(_hand_built(), _train(), _test()), "class_names": ["left", "right"]}
    html = section(result, FigureSet(tmp_path))
    assert '<td>left</td><td class="num">100</td><td class="num">2</td>' in html
    assert '<td class="num">0.7273</td>' in html  # class 0's recall, 8/11
    assert "1 of 1 class pairs" in html and "Not shown exclusive" not in html
    assert (tmp_path / "naps_patterns.png").stat().st_size > 1000
    not_applicable = naps.analyse(nn.Sequential(nn.Linear(2, 2)), _train(), _test())
    assert section(not_applicable, FigureSet(tmp_path)) == ""
