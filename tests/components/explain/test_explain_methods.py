"""The eight post-hoc methods and the generic LFA explainer (Han et al. 2022).

Closed forms on a linear model ``f(x) = w.x + b``: gradients and SmoothGrad give ``w``; IG with a
zero baseline, Gradient x Input and single-feature Occlusion give ``w * x``; KernelSHAP gives
``w * (x - baseline)``; LIME and C-LIME find the sign of ``w`` (C-LIME: ``w`` itself).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from captum.attr import Occlusion
from torch import nn

from components.explain.posthoc import lfa
from components.explain.posthoc.methods import METHODS, attribute
from components.models import create_model
from components.models.base import ModelOutput
from components.perturbation.groups import feature_groups

WEIGHTS = torch.tensor([1.5, -0.8, 0.0, 2.0, -1.2, 0.6, -2.2, 0.9])
SAMPLING = ("lime", "c_lime", "kernel_shap", "smoothgrad")


class Linear(nn.Module):
    """``logits = [0, w.x + b]``: the explained logit (target 1) is ``f(x) = w.x + b``."""

    def __init__(self, weights: torch.Tensor, bias: float = 0.3) -> None:
        super().__init__()
        self.weights = nn.Parameter(weights.clone())
        self.bias = nn.Parameter(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        f = x.flatten(1) @ self.weights + self.bias
        return ModelOutput(logits=torch.stack([torch.zeros_like(f), f], dim=1))


@pytest.fixture
def linear() -> Linear:
    return Linear(WEIGHTS)


@pytest.fixture
def x() -> torch.Tensor:
    # Positive inputs, so w * x has the sign of w.
    return torch.rand(4, 8, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.5


def _mlp(input_shape, num_classes=3):
    torch.manual_seed(0)
    return create_model("mlp", input_shape=input_shape, num_classes=num_classes, tiny=True)


@pytest.mark.parametrize("method", ["gradients", "smoothgrad"])
def test_gradients_and_smoothgrad_of_a_linear_model_are_its_weights(linear, x, method):
    attributions = attribute(linear, x, method, target=1)
    np.testing.assert_allclose(attributions, WEIGHTS.expand_as(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("method", ["ig", "gradient_x_input", "occlusion"])
def test_ig_gradient_x_input_and_occlusion_with_zero_baseline_are_w_times_x(linear, x, method):
    attributions = attribute(linear, x, method, target=1)
    np.testing.assert_allclose(attributions, (WEIGHTS * x).numpy(), atol=1e-5)


def test_ig_is_complete(linear, x):
    attributions = attribute(linear, x, "ig", target=1, num_samples=8)
    with torch.no_grad():
        gap = linear(x).logits[:, 1] - linear(torch.zeros_like(x)).logits[:, 1]
    np.testing.assert_allclose(attributions.sum(1), gap.numpy(), atol=1e-5)


@pytest.mark.parametrize("engine", ["captum", "lfa"])
def test_kernel_shap_recovers_w_times_x_minus_baseline(linear, x, engine):
    baseline = torch.linspace(-1, 1, 8)
    attributions = attribute(
        linear, x, "kernel_shap", target=1, baseline=baseline, num_samples=300, engine=engine
    )
    np.testing.assert_allclose(attributions, (WEIGHTS * (x - baseline)).numpy(), atol=1e-3)


@pytest.mark.parametrize(
    ("method", "engine"), [("lime", "captum"), ("lime", "lfa"), ("c_lime", None)]
)
def test_lime_and_c_lime_recover_the_sign_of_the_weights(linear, x, method, engine):
    options = {"engine": engine} if engine else {}
    attributions = attribute(linear, x, method, target=1, **options)
    clear = WEIGHTS.abs() > 0.3
    signs = np.sign(attributions[:, clear.numpy()])
    np.testing.assert_array_equal(signs, np.sign(WEIGHTS[clear].numpy())[None].repeat(len(x), 0))


def test_c_lime_of_a_linear_model_is_its_weights(linear, x):
    np.testing.assert_allclose(
        attribute(linear, x, "c_lime", target=1), WEIGHTS.expand_as(x), atol=1e-4
    )


@pytest.mark.parametrize(
    ("method", "options"),
    [(m, {}) for m in SAMPLING] + [(m, {"engine": "lfa"}) for m in ("lime", "kernel_shap")],
)
def test_sampling_methods_are_deterministic_for_a_seed(method, options):
    model, x = _mlp((6,)), torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    first = attribute(model, x, method, num_samples=40, seed=3, **options)
    again = attribute(model, x, method, num_samples=40, seed=3, **options)
    other = attribute(model, x, method, num_samples=40, seed=4, **options)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_seeding_leaves_the_global_rng_alone():
    model, x = _mlp((6,)), torch.randn(2, 6)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    attribute(model, x, "smoothgrad", num_samples=5, seed=0)
    np.testing.assert_array_equal(torch.rand(3), expected)


@pytest.mark.parametrize(("method", "shape"), list(itertools.product(METHODS, [(1, 8, 8), (10,)])))
def test_attributions_keep_the_input_shape(method, shape):
    model = _mlp(shape)
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
    attributions = attribute(model, x, method, num_samples=24)
    assert attributions.shape == x.shape
    assert attributions.dtype == np.float32
    assert np.isfinite(attributions).all()


def test_default_target_is_the_predicted_class():
    model, x = _mlp((6,)), torch.randn(5, 6)
    with torch.no_grad():
        predicted = model(x).logits.argmax(1)
    np.testing.assert_allclose(
        attribute(model, x, "gradients"), attribute(model, x, "gradients", target=predicted)
    )


def test_unknown_method_or_option_is_a_clear_error(linear, x):
    with pytest.raises(ValueError, match="unknown method 'shap'.*'lime'.*'ig'"):
        attribute(linear, x, "shap")
    with pytest.raises(ValueError, match="gradients takes no option"):
        attribute(linear, x, "gradients", sigma=1.0)
    with pytest.raises(ValueError, match="engine"):
        attribute(linear, x, "lime", engine="shap")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        attribute(linear, x, "c_lime", num_samples=0)


def test_large_images_are_explained_by_4x4_patches_across_channels():
    model = _mlp((3, 32, 32), num_classes=4)
    x = torch.randn(2, 3, 32, 32)
    for method, options in (("occlusion", {}), ("lime", {"engine": "lfa"}), ("c_lime", {})):
        attributions = attribute(model, x, method, num_samples=80, **options)
        patches = attributions.reshape(2, 3, 8, 4, 8, 4)
        np.testing.assert_allclose(
            patches, patches[:, :1, :, :1, :, :1].repeat(3, 1).repeat(4, 3).repeat(4, 5), rtol=1e-6
        )


def test_feature_groups():
    pixels = feature_groups((3, 8, 8))
    assert pixels.shape == (3, 8, 8) and pixels.max() == 63
    assert (pixels == pixels[:1]).all()  # one group per location, across channels
    patches = feature_groups((3, 32, 32))
    assert patches.max() == 63 and patches[0, 3, 3] == 0 and patches[2, 4, 0] == 8
    assert feature_groups((3, 8, 8), patch_size=4).max() == 3
    np.testing.assert_array_equal(feature_groups((5,)), np.arange(5))
    with pytest.raises(ValueError, match="patch_size"):
        feature_groups((5,), patch_size=2)


def test_custom_feature_mask_groups_features(linear, x):
    """Removing a pair drops the output by the pair's sum of w * x; that drop is spread evenly
    over the pair, so the pair's attributions sum to it."""
    mask = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    attributions = attribute(linear, x, "occlusion", target=1, feature_mask=mask)
    pair_sums = (WEIGHTS * x).reshape(4, 4, 2).sum(2)
    np.testing.assert_allclose(attributions, pair_sums.repeat_interleave(2, 1) / 2, atol=1e-5)


def test_overlapping_occlusion_windows_match_captum(linear, x):
    ours = attribute(linear, x, "occlusion", target=1, window=(3,), stride=(2,))
    forward = lambda batch: linear(batch).logits  # noqa: E731
    theirs = Occlusion(forward).attribute(
        x, sliding_window_shapes=(3,), strides=(2,), baselines=0.0, target=1
    )
    np.testing.assert_allclose(ours, theirs.detach().numpy(), atol=1e-5)


def test_removal_options_reach_the_removal_operator(linear, x):
    mean = torch.full((8,), 0.5)
    attributions = attribute(linear, x, "occlusion", target=1, replacement="mean", mean=mean)
    np.testing.assert_allclose(attributions, (WEIGHTS * (x - mean)).numpy(), atol=1e-5)
    shap = attribute(
        linear, x, "kernel_shap", target=1, num_samples=100, replacement="mean", mean=mean
    )
    np.testing.assert_allclose(shap, (WEIGHTS * (x - mean)).numpy(), atol=1e-3)


def test_many_digits_are_explained_with_batched_model_calls():
    model = _mlp((1, 8, 8), num_classes=10)
    digits = torch.randn(256, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    batched = [m for m in METHODS if m not in ("lime", "kernel_shap")]
    for method, options in [(m, {}) for m in batched] + [
        ("lime", {"engine": "lfa"}),
        ("kernel_shap", {"engine": "lfa"}),
    ]:
        attributions = attribute(model, digits, method, **options)
        assert attributions.shape == digits.shape and np.isfinite(attributions).all()


# --- the generic explainer: each method as a neighbourhood and a loss -------------------------


def _target_logit(model):
    return lambda batch: model(batch).logits[:, 1]


def test_lfa_reproduces_the_gradient_methods(linear, x):
    f = _target_logit(linear)
    expected = {"gradients": WEIGHTS.expand_as(x), "ig": WEIGHTS * x}
    for method, neighbourhood, sigma in (("gradients", "gaussian", 0.0), ("ig", "path", None)):
        attributions = lfa.local_explanation(
            f, x, neighbourhood=neighbourhood, loss="gradient_matching", sigma=sigma, num_samples=16
        )
        np.testing.assert_allclose(attributions, expected[method], atol=1e-5)


def test_lfa_path_matches_ig_on_a_nonlinear_model():
    model, x = _mlp((6,)), torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    ours = lfa.local_explanation(
        lambda b: model(b).logits,
        x,
        neighbourhood="path",
        loss="gradient_matching",
        target=1,
        num_samples=400,
    )
    ig = attribute(model, x, "ig", target=1, num_samples=64)
    np.testing.assert_allclose(ours, ig, atol=0.02 * np.abs(ig).max())


def test_lfa_kernel_shap_matches_exact_shapley_values_on_a_nonlinear_model():
    model, x = _mlp((4,)), torch.randn(2, 4, generator=torch.Generator().manual_seed(5))
    f = lambda b: model(b).logits[:, 0]  # noqa: E731
    ours = lfa.local_explanation(f, x, neighbourhood="binary", kernel="shapley", num_samples=4000)
    np.testing.assert_allclose(ours, _exact_shapley(f, x), atol=0.03 * np.abs(ours).max())
    with torch.no_grad():  # efficiency, enforced by the anchored empty and full coalitions
        gap = (f(x) - f(torch.zeros_like(x))).numpy()
    np.testing.assert_allclose(ours.sum(1), gap, atol=1e-4)


def test_lfa_kernel_shap_with_one_feature_or_few_samples():
    f = lambda b: 2 * b[:, 0] + 1  # noqa: E731
    one = lfa.local_explanation(f, torch.ones(2, 1), neighbourhood="binary", kernel="shapley")
    np.testing.assert_allclose(one, 2.0, atol=1e-5)
    few = lfa.local_explanation(
        f, torch.ones(2, 5), neighbourhood="binary", kernel="shapley", num_samples=3
    )
    assert np.isfinite(few).all()


def _exact_shapley(f, x):
    """Shapley values with features removed to zero, by enumerating all coalitions."""
    d = x.shape[1]
    values = np.zeros(x.shape)
    with torch.no_grad():
        for i, subset in itertools.product(range(d), itertools.product([0, 1], repeat=d - 1)):
            keep = torch.tensor(subset[:i] + (0,) + subset[i:], dtype=x.dtype)
            size = int(keep.sum())
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            with_i = keep.clone()
            with_i[i] = 1
            values[:, i] += weight * (f(x * with_i) - f(x * keep)).numpy()
    return values


def test_lfa_single_removal_is_occlusion_and_lime_kernels_are_exact_on_linear(linear, x):
    f = _target_logit(linear)
    occlusion = lfa.local_explanation(f, x, neighbourhood="single_removal")
    np.testing.assert_allclose(occlusion, WEIGHTS * x, atol=1e-5)
    for kernel in ("uniform", "exponential"):
        lime = lfa.local_explanation(f, x, neighbourhood="binary", kernel=kernel, num_samples=64)
        np.testing.assert_allclose(lime, WEIGHTS * x, atol=1e-4)


def test_lfa_rejects_combinations_outside_the_table(linear, x):
    f = _target_logit(linear)
    with pytest.raises(ValueError, match="path neighbourhood has no squared loss"):
        lfa.local_explanation(f, x, neighbourhood="path", loss="squared")
    with pytest.raises(ValueError, match="kernel 'shapley' does not apply to gaussian"):
        lfa.local_explanation(f, x, neighbourhood="gaussian", kernel="shapley")
    with pytest.raises(ValueError, match="unknown neighbourhood"):
        lfa.local_explanation(f, x, neighbourhood="uniform")
    with pytest.raises(ValueError, match="give target"):
        lfa.local_explanation(lambda b: linear(b).logits, x, neighbourhood="gaussian")


def test_sliding_windows_cover_every_feature():
    windows = lfa.sliding_windows((1, 5, 5), (1, 2, 2), (1, 2, 2))
    assert windows.shape == (9, 1, 5, 5)  # starts 0, 2, 4 per axis, the last cropped
    assert (windows.sum(0) >= 1).all()
    with pytest.raises(ValueError, match="must fit"):
        lfa.sliding_windows((4,), (5,))
    with pytest.raises(ValueError, match="stride"):
        lfa.sliding_windows((4,), (2,), (3,))
