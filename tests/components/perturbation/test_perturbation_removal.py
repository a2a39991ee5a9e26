"""The shared feature-removal operator: each replacement, blending, top-k masks, bad input."""

import pytest
import torch

from components.perturbation.removal import (
    gaussian_blur,
    remove_features,
    rows_per_call,
    top_k_mask,
)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.arange(1.0, 2 * 3 * 4 * 4 + 1).reshape(2, 3, 4, 4)


@pytest.fixture
def mask() -> torch.Tensor:
    mask = torch.zeros(2, 3, 4, 4)
    mask[:, :, :2, :2] = 1
    return mask


def test_baseline_replacement_defaults_to_zero_and_keeps_the_rest(x, mask):
    out = remove_features(x, mask)
    assert (out[mask.bool()] == 0).all()
    torch.testing.assert_close(out[~mask.bool()], x[~mask.bool()])
    assert out is not x and (x[mask.bool()] != 0).all()  # the input is untouched


def test_baseline_replacement_takes_a_scalar_or_a_broadcastable_tensor(x, mask):
    assert (remove_features(x, mask, baseline=-2.0)[mask.bool()] == -2.0).all()
    per_channel = torch.tensor([10.0, 20.0, 30.0]).reshape(3, 1, 1)
    out = remove_features(x, mask, baseline=per_channel)
    torch.testing.assert_close(out[:, :, 0, 0], torch.tensor([[10.0, 20.0, 30.0]] * 2))
    torch.testing.assert_close(out[:, :, 3, 3], x[:, :, 3, 3])


def test_mean_replacement_uses_the_per_feature_mean(x, mask):
    mean = torch.full((3, 4, 4), 0.5)
    out = remove_features(x, mask, replacement="mean", mean=mean)
    assert (out[mask.bool()] == 0.5).all()
    assert (remove_features(x, mask, replacement="mean")[mask.bool()] == 0).all()


def test_noise_replacement_is_seeded_gaussian_with_the_given_std(mask):
    x = torch.zeros(64, 3, 4, 4)
    full = torch.ones_like(x)
    first = remove_features(
        x, full, replacement="noise", noise_std=2.0, generator=torch.Generator().manual_seed(0)
    )
    again = remove_features(
        x, full, replacement="noise", noise_std=2.0, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(first, again)
    assert abs(first.std().item() - 2.0) < 0.1 and abs(first.mean().item()) < 0.1
    kept = remove_features(x + 5, mask[:1].expand_as(x), replacement="noise")
    assert (kept[~mask[:1].expand_as(x).bool()] == 5).all()


def test_blur_replacement_uses_a_blurred_copy(x, mask):
    out = remove_features(x, mask, replacement="blur", blur_sigma=1.0)
    blurred = gaussian_blur(x, 1.0)
    torch.testing.assert_close(out[mask.bool()], blurred[mask.bool()])
    constant = torch.full((1, 2, 5, 5), 3.0)
    torch.testing.assert_close(gaussian_blur(constant, 1.5), constant)  # blur keeps constants
    assert gaussian_blur(x, 1.0).shape == x.shape


def test_float_masks_blend_towards_the_reference(x):
    half = torch.full_like(x, 0.5)
    torch.testing.assert_close(remove_features(x, half, baseline=0.0), x / 2)


def test_tabular_inputs_and_broadcast_masks():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = remove_features(x, torch.tensor([True, False, True]), baseline=-1.0)
    torch.testing.assert_close(out, torch.tensor([[-1.0, 2.0, -1.0], [-1.0, 5.0, -1.0]]))


def test_bad_replacement_or_blur_of_tabular_input_is_an_error():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="replacement 'zeros' is not one of"):
        remove_features(x, torch.ones(3), replacement="zeros")
    with pytest.raises(ValueError, match="blur removal needs image inputs"):
        remove_features(x, torch.ones(3), replacement="blur")


def test_top_k_mask_picks_the_largest_absolute_attributions():
    attributions = torch.tensor([[0.1, -3.0, 2.0, 0.0], [5.0, 1.0, -1.0, 0.5]])
    expected = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(top_k_mask(attributions, 2), expected)
    smallest = top_k_mask(attributions, 1, largest=False)
    torch.testing.assert_close(smallest, torch.tensor([[0.0, 0, 0, 1], [0, 0, 0, 1]]))


def test_top_k_mask_breaks_ties_by_feature_order_and_keeps_the_shape():
    ties = torch.ones(1, 1, 2, 2)
    mask = top_k_mask(ties, 3)
    assert mask.shape == ties.shape
    torch.testing.assert_close(mask.flatten(), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert top_k_mask(ties, 0).sum() == 0 and top_k_mask(ties, 4).sum() == 4


@pytest.mark.parametrize("k", [-1, 5])
def test_top_k_mask_rejects_k_out_of_range(k):
    with pytest.raises(ValueError, match=r"k must lie in \[0, 4\]"):
        top_k_mask(torch.ones(2, 4), k)


@pytest.mark.parametrize(
    ("shape", "cpu", "gpu"),
    [
        ((64,), 1024, 1024),  # digits: the limit on both
        ((3, 64, 64), 42, 1024),  # 48 KiB rows: 2 MiB of input per call on a CPU
        ((3, 224, 224), 3, 111),  # 588 KiB rows: 64 MiB per call on a GPU
    ],
)
def test_a_cpu_call_holds_megabytes_of_input_and_a_gpu_call_tens_of_them(shape, cpu, gpu):
    assert rows_per_call(shape, 1024) == cpu
    assert rows_per_call(shape, 1024, torch.device("cuda", 0)) == gpu
    assert rows_per_call(shape, 2, "cuda") == 2
