"""'This looks like that, because ...' (Nauta et al., 2021): perturbations and importances.

Fixture prototypes are closed-form functions of the raw image, so some importances are known
exactly: blending towards grey scales ``R - (G + B) / 2`` by the blend factor and leaves the
grey level unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from components.data.parts import generate_parts
from components.explain.because import (
    Perturbations,
    characteristic_importance,
    non_local_means,
    perturb,
    shift_hue,
    sine_warp,
)
from components.models.base import PrototypeModel

FAST = Perturbations(texture_window=9)


class RawImagePrototypes(PrototypeModel):
    """Maps on a 2x-downsampled grid of the *raw* image, recovered from standardised input.

    ``redness``: ``R - (G + B) / 2``; ``grey``: the luma; ``grain``: distance from the local mean.
    """

    def __init__(self, kinds: list[str], mean: np.ndarray, std: np.ndarray, shape) -> None:
        super().__init__()
        self.kinds = kinds
        self.mean = torch.from_numpy(mean).reshape(shape)
        self.std = torch.from_numpy(std).reshape(shape)

    def activation_maps(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * self.std + self.mean
        pixels = {
            "redness": lambda: raw[:, 0] - (raw[:, 1] + raw[:, 2]) / 2,
            "grey": lambda: (raw * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1),
            "grain": lambda: (raw - F.avg_pool2d(raw, 3, stride=1, padding=1)).abs().sum(1),
        }
        maps = [F.avg_pool2d(pixels[kind]()[:, None], 2)[:, 0] for kind in self.kinds]
        return torch.stack(maps, dim=1)


@pytest.fixture(scope="module")
def standardised():
    data = generate_parts(24, 4, seed=2)
    flat = data.x.reshape(len(data.x), -1)
    mean, std = flat.mean(0), flat.std(0) + 0.1
    return ((flat - mean) / std).reshape(data.x.shape), mean, std


def test_hue_shift_turns_red_into_green_and_a_full_turn_changes_nothing():
    red = torch.tensor([1.0, 0.0, 0.0])[None, :, None, None]
    torch.testing.assert_close(shift_hue(red, 1 / 3)[:, :, 0, 0], torch.tensor([[0.0, 1.0, 0.0]]))
    images = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(shift_hue(images, 1.0), images, atol=1e-5, rtol=0)
    torch.testing.assert_close(shift_hue(images, 0.0), images, atol=1e-5, rtol=0)


def test_colour_blends_keep_grey_and_flat_images():
    grey = torch.rand(2, 1, 6, 6).expand(-1, 3, -1, -1)
    torch.testing.assert_close(perturb(grey, "saturation", Perturbations()), grey)
    flat = torch.full((2, 3, 6, 6), 0.3)
    for name in ("contrast", "texture", "shape"):
        torch.testing.assert_close(perturb(flat, name, FAST), flat)
    with pytest.raises(ValueError, match="RGB"):
        perturb(torch.rand(1, 1, 6, 6), "hue", Perturbations())


def test_non_local_means_removes_grain_but_keeps_an_edge():
    step = torch.zeros(1, 1, 24, 24)
    step[..., 12:] = 0.8
    noisy = step + 0.03 * torch.randn(step.shape, generator=torch.Generator().manual_seed(0))
    clean = non_local_means(noisy, h=0.1, patch=7, window=21)

    left, right = clean[..., 2:10], clean[..., 14:22]
    assert left.std() < 0.3 * noisy[..., 2:10].std() and right.std() < 0.3 * noisy[..., 14:].std()
    assert abs(left.mean() - 0.0) < 0.01 and abs(right.mean() - 0.8) < 0.01


def test_sine_warp_shifts_a_vertical_ramp_by_the_sine_of_the_column():
    size, amplitude, period = 32, 2 / 32, 0.5
    ramp = ((torch.arange(size) + 0.5) / size)[:, None].expand(size, size)[None, None]
    warped = sine_warp(ramp, amplitude, period)

    cols = (torch.arange(size) + 0.5) / size
    expected = ramp - amplitude * torch.sin(2 * math.pi * cols / period)
    inner = slice(3, size - 3)  # rows whose source stays inside the image
    torch.testing.assert_close(warped[..., inner, :], expected[..., inner, :], atol=1e-5, rtol=0)
    torch.testing.assert_close(sine_warp(ramp, 0.0, period), ramp, atol=1e-6, rtol=0)


def test_blend_importances_have_closed_forms(standardised):
    x, mean, std = standardised
    model = RawImagePrototypes(["redness", "grey"], mean, std, x.shape[1:])
    table = characteristic_importance(model, x, mean, std, strengths=FAST, weighted=False)
    best = model.activation_maps(torch.from_numpy(x)).flatten(2).max(2).values

    redness, grey = table
    assert set(redness) == {"hue", "saturation", "contrast", "texture", "shape"}
    assert redness["saturation"] == pytest.approx(0.3 * best[:, 0].mean().item(), rel=1e-4)
    assert redness["contrast"] == pytest.approx(0.55 * best[:, 0].mean().item(), rel=1e-4)
    assert grey["saturation"] == pytest.approx(0.0, abs=1e-5)
    assert redness["hue"] > 0.05


def test_weighted_importance_is_the_papers_similarity_weighted_mean(standardised):
    x, mean, std = standardised
    model = RawImagePrototypes(["redness"], mean, std, x.shape[1:])
    best = model.activation_maps(torch.from_numpy(x)).flatten(2).max(2).values[:, 0]
    assert (best > 0).all()
    (row,) = characteristic_importance(model, x, mean, std, strengths=FAST)

    expected = 0.3 * (best**2).sum() / best.sum()
    assert row["saturation"] == pytest.approx(expected.item(), rel=1e-4)


def test_a_grain_detector_depends_on_texture_a_colour_detector_on_hue(standardised):
    x, mean, std = standardised
    model = RawImagePrototypes(["grain", "redness"], mean, std, x.shape[1:])
    grain, redness = characteristic_importance(model, x, mean, std, strengths=FAST)

    # Importances compare within a prototype: the scales of different prototypes differ.
    assert grain["texture"] > grain["hue"] > 0
    assert redness["hue"] > 3 * redness["texture"] > 0


def test_greyscale_inputs_get_no_colour_terms_and_use_the_pixel_range():
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 16
    model = RawImagePrototypes(["grain"], np.zeros(1, np.float32), np.ones(1, np.float32), (1,))
    model.activation_maps = lambda x: F.avg_pool2d((x - F.avg_pool2d(x, 3, 1, 1)).abs(), 2)
    (row,) = characteristic_importance(model, x, 0.0, 1.0, pixel_range=(0, 16), strengths=FAST)

    assert set(row) == {"contrast", "texture", "shape"}
    assert row["contrast"] > 0 and row["texture"] > 0
