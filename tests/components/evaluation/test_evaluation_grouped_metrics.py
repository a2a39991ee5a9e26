"""Metrics over feature groups: identical to the per-feature metrics when each group is one
feature, whole groups removed, a cost set by the number of groups rather than pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from components.evaluation.explanation_chooser import choose_method, default_k
from components.evaluation.explanation_quality import attribution_entropy, sparseness
from components.evaluation.faithfulness import (
    deletion_auc,
    deletion_curve,
    fidelity,
    infidelity,
    insertion_auc,
    pgi,
    pgu,
)
from components.perturbation.groups import expand_groups, group_labels, group_sizes, group_sums


class Recording(nn.Module):
    """A linear image classifier that keeps every input row it is called on."""

    def __init__(self, shape, classes: int = 3) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(classes, math.prod(shape), generator=generator) * 0.05)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return x.flatten(1) @ self.w.T

    @property
    def rows(self) -> int:
        return sum(len(batch) for batch in self.seen)


def _data(shape, count=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, *shape, generator=generator) + 0.5, torch.randn(
        count, *shape, generator=generator
    )


def _scores(model, x, attr, **grouping):
    return {
        "pgi": pgi(model, x, attr, 8, **grouping),
        "pgu": pgu(model, x, attr, 8, **grouping),
        **fidelity(model, x, attr, 8, **grouping),
        "deletion": deletion_auc(model, x, attr, **grouping),
        "insertion": insertion_auc(model, x, attr, **grouping),
        "infidelity": infidelity(model, x, attr, n_perturb_samples=4, **grouping),
        "sparseness": sparseness(attr, grouping.get("groups")),
        "entropy": attribution_entropy(attr, grouping.get("groups")),
    }


def test_one_group_per_pixel_gives_the_per_pixel_scores_bit_for_bit():
    """What keeps digits' results unchanged: auto groups there are the pixels."""
    model = Recording((1, 8, 8))
    x, attr = _data((1, 8, 8))
    grouped = _scores(model, x, attr, groups=group_labels(x, "auto"))
    for name, values in _scores(model, x, attr).items():
        np.testing.assert_array_equal(grouped[name], values, err_msg=name)
    pixels = (
        pgi(model, x, attr, 8, pixel_level=True),
        deletion_auc(model, x, attr, pixel_level=True),
    )
    np.testing.assert_array_equal(pixels[0], grouped["pgi"])
    np.testing.assert_array_equal(pixels[1], grouped["deletion"])


def _constant_within_groups(rows: torch.Tensor, labels: torch.Tensor) -> bool:
    means = group_sums(rows, labels) / group_sizes(labels)
    return torch.allclose(rows, expand_groups(means, labels).expand_as(rows), atol=1e-6)


def test_grouped_metrics_remove_whole_patches():
    model = Recording((3, 32, 32))
    x = torch.ones(2, 3, 32, 32)  # removed to 0: every input seen is 0/1 per element
    attr = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    patches = group_labels(x, "patches", patch_size=8)
    _scores(model, x, attr, groups=patches)
    seen = torch.cat(model.seen)
    assert set(seen.unique().tolist()) == {0.0, 1.0}
    assert _constant_within_groups(seen, patches)
    model.seen.clear()
    _scores(model, x, attr)  # without groups the same metrics cut patches apart
    assert not _constant_within_groups(torch.cat(model.seen), patches)


def test_the_cost_of_the_metrics_follows_the_groups_not_the_pixels():
    rows = {}
    for side in (32, 128):
        model = Recording((3, side, side))
        x, attr = _data((3, side, side), count=2)
        labels = group_labels(x, "patches", patch_size=side // 4)  # 16 patches
        _scores(model, x, attr, groups=labels)
        rows[side] = model.rows
    assert rows[32] == rows[128]
    model = Recording((3, 32, 32))
    x, attr = _data((3, 32, 32), count=2)
    deletion_curve(model, x, attr, steps=10, groups=group_labels(x, "patches", patch_size=8))
    assert model.rows == 2 * (1 + 11)  # the target once, then one call per step and sample


def test_per_sample_groups_each_count_their_own_groups():
    x = torch.ones(2, 1, 2, 4)
    labels = torch.tensor([[[[0, 0, 1, 1], [0, 0, 1, 1]]], [[[0, 1, 2, 3], [4, 4, 4, 4]]]])
    model = Recording((1, 2, 4))
    attr = torch.tensor([[[[3.0, 3, -1, -1], [3, 3, -1, -1]]], [[[1.0, 1, 1, 1], [1, 1, 1, 1]]]])
    curve = deletion_curve(model, x, attr, steps=2, groups=labels)
    full = model(torch.zeros(1, 1, 2, 4)).softmax(1)[0]
    target = model(x).argmax(1)
    np.testing.assert_allclose(curve[:, -1], full[target].detach().numpy(), rtol=1e-6)
    # sample 0 has 2 groups: half-way, the first (larger attribution) is gone
    assert (model.seen[2][0, 0, :, :2] == 0).all() and (model.seen[2][0, 0, :, 2:] == 1).all()
    # Gini: sample 1's five groups carry 1, 1, 1, 1, 4 (sum of its attributions per group)
    gini = sparseness(attr, labels)
    values = np.sort([1.0, 1.0, 1.0, 1.0, 4.0])
    expected = ((2 * np.arange(1, 6) - 5 - 1) * values).sum() / (5 * values.sum())
    assert gini[1] == pytest.approx(expected)
    assert gini[0] == pytest.approx((12 - 4) / (2 * 16))  # two groups: 12 and -4 -> |.|
    assert attribution_entropy(attr, labels)[0] == pytest.approx(
        -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    )


def test_the_chooser_counts_k_in_groups_and_ranks_on_them():
    shape = (3, 64, 64)
    model = Recording(shape, classes=2)
    x, _ = _data(shape, count=8)
    labels = group_labels(x, "patches", patch_size=16)
    assert default_k(x, labels) == 4 and default_k(x) == round(0.25 * 3 * 64 * 64)
    with torch.no_grad():
        target = model(x).argmax(1)
    truth = x * model.w[target].reshape(-1, *shape)  # exact for a linear model
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    rows = choose_method(
        model, x, {"noise": noise, "truth": truth}, metric="pgi", groups=labels, target=target
    )
    assert [row["method"] for row in rows] == ["truth", "noise"]
