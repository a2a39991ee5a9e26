"""Feature groups (patches, superpixels) for every removal-based method: how many, where, and
that each method's attribution is constant within a group and sums to the group's effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from components.explain.config import ExplainConfig
from components.explain.posthoc.methods import attribute
from components.models.base import ModelOutput
from components.perturbation.groups import (
    as_labels,
    column_groups,
    expand_groups,
    group_labels,
    group_sizes,
    group_sums,
    num_groups,
)

GROUPED = [
    ("occlusion", {}),
    ("lime", {}),
    ("lime", {"engine": "lfa"}),
    ("kernel_shap", {}),
    ("kernel_shap", {"engine": "lfa"}),
    ("c_lime", {}),
]


class PixelLinear(nn.Module):
    """``logits = [0, w . x]`` on images: the effect of removing a group is its sum of w * x."""

    def __init__(self, shape) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(shape, generator=generator), requires_grad=False)

    def forward(self, x):
        f = (x * self.w).flatten(1).sum(1)
        return ModelOutput(logits=torch.stack([torch.zeros_like(f), f], dim=1))


def _two_squares(count: int = 2, side: int = 48) -> torch.Tensor:
    """Images with a red square on a green background: SLIC must not cut across its edge."""
    images = torch.zeros(count, 3, side, side)
    images[:, 1] = 1.0
    images[:, :, 8:24, 8:24] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    return images + 0.02 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("shape", "count"),
    [((1, 8, 8), 64), ((10,), 10), ((3, 32, 32), 64), ((3, 224, 224), 64), ((2, 1000), 63)],
    ids=["digits", "tabular", "parts", "224", "signal"],
)
def test_auto_keeps_small_inputs_per_feature_and_groups_large_images(shape, count):
    labels = group_labels(torch.zeros(2, *shape), "auto")
    assert labels.shape == (1, *shape)
    assert num_groups(labels) == count
    if shape == (1, 8, 8) or shape == (10,):  # the current behaviour: one group per feature
        np.testing.assert_array_equal(labels.flatten(), np.arange(count))


def test_patches_of_224_images_are_squares_across_channels():
    labels = group_labels(torch.zeros(1, 3, 224, 224), "patches", patch_size=16)[0]
    assert num_groups(labels[None]) == 14 * 14
    assert (labels == labels[:1]).all()  # the same group in every channel
    assert (labels[0, :16, :16] == 0).all() and labels[0, 16, 0] == 14 and labels[0, 0, 16] == 1
    counts = torch.bincount(labels.flatten())
    assert (counts == 3 * 16 * 16).all()  # 224 = 14 * 16: no cropped patch


def test_none_is_one_group_per_element():
    labels = group_labels(torch.zeros(1, 3, 4, 4), "none")
    np.testing.assert_array_equal(labels.flatten(), np.arange(48))


def test_superpixels_follow_the_image_and_differ_per_image():
    images = _two_squares()
    labels = group_labels(images, "superpixels", patch_size=8)  # about 36 segments
    assert labels.shape == images.shape
    assert (labels == labels[:, :1]).all()  # across channels
    for row in labels:
        counts = torch.bincount(row[0].flatten())
        assert 9 <= len(counts) <= 72 and (counts > 0).all()  # contiguous labels
        square = torch.zeros(48, 48, dtype=torch.bool)
        square[8:24, 8:24] = True
        for segment in row[0].unique():
            inside = square[row[0] == segment].float().mean()
            assert inside < 0.1 or inside > 0.9  # no superpixel straddles the square's edge


def test_bad_grouping_is_a_clear_error():
    with pytest.raises(ValueError, match="feature_groups must be one of"):
        group_labels(torch.zeros(1, 5), "pixels")
    with pytest.raises(ValueError, match="patches need"):
        group_labels(torch.zeros(1, 5), "patches")
    with pytest.raises(ValueError, match="superpixels need"):
        group_labels(torch.zeros(1, 5), "superpixels")
    with pytest.raises(ValueError, match="2 masks for 3 inputs"):
        as_labels(torch.zeros(2, 4, dtype=torch.long), (4,), count=3)


@pytest.mark.parametrize("kind", ["patches", "superpixels"])
@pytest.mark.parametrize(("method", "options"), GROUPED, ids=lambda v: str(v))
def test_removal_methods_are_constant_within_each_group(kind, method, options):
    x = _two_squares()
    model = PixelLinear(x.shape[1:])
    labels = group_labels(x, kind, patch_size=8)
    attr = attribute(model, x, method, target=1, feature_mask=labels, num_samples=64, **options)
    attr = torch.as_tensor(attr)
    means = group_sums(attr, labels) / group_sizes(labels).clamp(min=1)
    torch.testing.assert_close(attr, expand_groups(means, labels).expand_as(attr))
    assert attr.flatten(1).std(1).min() > 0  # not trivially constant
    for sample in range(len(x)):  # as many distinct values as the sample has groups
        own = labels[sample if len(labels) > 1 else 0]
        assert len(torch.unique(attr[sample])) == num_groups(own[None])


@pytest.mark.parametrize("kind", ["patches", "superpixels"])
def test_a_groups_attributions_sum_to_its_effect(kind):
    """Occlusion: the drop when the group is removed; KernelSHAP adds up to f(x) - f(0)."""
    x = _two_squares()
    model = PixelLinear(x.shape[1:])
    labels = group_labels(x, kind, patch_size=8)
    effect = group_sums(x * model.w.detach(), labels)  # removing a group drops f by this
    occlusion = attribute(model, x, "occlusion", target=1, feature_mask=labels)
    sums = group_sums(torch.as_tensor(occlusion), labels)
    torch.testing.assert_close(sums, effect, atol=1e-4, rtol=1e-4)
    shap = attribute(model, x, "kernel_shap", target=1, feature_mask=labels, num_samples=200)
    total = (x * model.w.detach()).flatten(1).sum(1)
    np.testing.assert_allclose(shap.reshape(2, -1).sum(1), total.numpy(), atol=2e-3)


def test_explain_config_rejects_bad_grouping_and_budget_values():
    with pytest.raises(ValueError, match=r"explain\.feature_groups='pixels'.*one of"):
        ExplainConfig(feature_groups="pixels")
    with pytest.raises(ValueError, match=r"explain\.budget_s=-1"):
        ExplainConfig(budget_s=-1)
    with pytest.raises(ValueError, match=r"explain\.budget_s='soon'"):
        ExplainConfig(budget_s="soon")
    with pytest.raises(ValueError, match=r"explain\.patch_size=0"):
        ExplainConfig(patch_size=0)
    assert ExplainConfig(budget_s=12).budget_s == 12


@pytest.mark.parametrize("name", ["top_k", "surrogate_top_k", "surrogate_depth"])
def test_explain_config_names_a_count_below_1_and_what_it_must_be(name):
    # each reached the explain stage (or sklearn's tree) and failed there with a traceback
    with pytest.raises(ValueError, match=rf"explain\.{name}=0 \({name} is >= 1\)"):
        ExplainConfig(**{name: 0})


def test_a_word_columns_features_share_a_group():
    names = ["age", "work=private", "work=state", "hours", "sex=f", "sex=m"]
    categorical = {n: tuple(n.split("=")) for n in names if "=" in n}
    columns = column_groups(names, categorical)
    assert columns == [0, 1, 1, 2, 3, 3]
    assert column_groups(names[:1], {}) is None  # no word column: one group per feature
    x = torch.zeros(2, 6)
    assert group_labels(x, "auto", columns=columns).tolist() == [columns]
    assert group_labels(x, "none", columns=columns).tolist() == [list(range(6))]
    with pytest.raises(ValueError, match="columns names 3 features, the inputs have 6"):
        group_labels(x, "auto", columns=[0, 1, 1])
