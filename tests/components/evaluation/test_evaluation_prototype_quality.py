"""Prototype consistency and stability (Huang et al., ICCV 2023) on the parts dataset's masks.

The fixture model's activation maps are closed-form functions of the image, so the right
answers are known: a prototype that fires on a colour always lands on the part of that colour.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from components.data.parts import generate_parts
from components.evaluation.prototype_quality import (
    activated_parts,
    consistency_score,
    stability_score,
)
from components.models import create_model, protopnet  # noqa: F401  (registers "protopnet")
from components.models.base import PrototypeModel

RED = (0.9, 0.1, 0.1)


class AnalyticPrototypes(PrototypeModel):
    """Prototype maps on a 2x-downsampled grid, each a fixed function of the raw RGB image.

    ``"colour"`` fires where pixels are close to red, ``"grain"`` where the image departs most
    from its local mean, ``"fixed"`` at one seeded random place whatever the image.
    """

    def __init__(self, kinds: list[tuple[str, int]], height: int = 32) -> None:
        super().__init__()
        self.kinds = kinds
        self.field = torch.rand(
            (height // 2, height // 2), generator=torch.Generator().manual_seed(1)
        )

    def prototype_classes(self) -> torch.Tensor:
        return torch.tensor([c for _, c in self.kinds])

    def activation_maps(self, x: torch.Tensor) -> torch.Tensor:
        maps = []
        for kind, _ in self.kinds:
            if kind == "colour":
                pixel = -((x - torch.tensor(RED)[:, None, None]) ** 2).sum(1)
            elif kind == "grain":
                pixel = (x - F.avg_pool2d(x, 3, stride=1, padding=1)).abs().sum(1)
            else:
                pixel = F.interpolate(self.field.expand(len(x), 1, -1, -1), scale_factor=2)[:, 0]
            maps.append(F.avg_pool2d(pixel[:, None], 2)[:, 0])
        return torch.stack(maps, dim=1)


@pytest.fixture(scope="module")
def parts():
    return generate_parts(160, 4, seed=0)


@pytest.fixture(scope="module")
def model():
    # Class 0 and class 3 both contain the red square.
    return AnalyticPrototypes([("colour", 0), ("fixed", 0), ("colour", 3), ("grain", 3)])


def test_activated_region_is_the_part_under_the_peak(parts, model):
    hits = activated_parts(model, parts.x, parts.masks, num_parts=6)
    red = parts.task.parts.index("red_square")
    has_red = (parts.masks == red + 1).any(axis=(1, 2))

    assert hits.shape == (160, 4, 6) and hits.dtype == bool
    np.testing.assert_array_equal(hits[has_red, 0, red], True)
    # A whole-image box covers every part present.
    everything = activated_parts(model, parts.x, parts.masks, half_size=32, num_parts=6)
    present = np.stack([(parts.masks == k + 1).any(axis=(1, 2)) for k in range(6)], axis=1)
    np.testing.assert_array_equal(everything[:, 1], present)


def test_consistency_is_one_for_a_part_detector_and_zero_for_a_fixed_spot(parts, model):
    names = parts.task.parts
    pixel = consistency_score(model, parts.x, parts.masks, parts.y, half_size=0, part_names=names)
    colour, fixed, colour_3, _ = pixel["prototypes"]

    assert (colour["part"], colour["frequency"], colour["consistent"]) == ("red_square", 1.0, True)
    assert colour["frequencies"][1:] == [0.0] * 5 and colour["images"] == 40
    assert colour_3["consistent"]
    # A fixed spot meets whatever part happens to lie there: rarely the same one.
    assert not fixed["consistent"] and fixed["frequency"] < 0.2
    # The paper's box (36 of 224 pixels: 5 of 32) around the peak gives the same verdicts.
    box = consistency_score(model, parts.x, parts.masks, parts.y, part_names=names)
    assert box["half_size"] == 5
    assert [r["consistent"] for r in box["prototypes"]] == [True, False, True, False]
    assert box["score"] == 0.5


def test_stability_is_one_without_noise_and_separates_robust_from_fragile_prototypes(parts, model):
    exact = stability_score(model, parts.x, parts.masks, noise_std=0.0, half_size=4)
    noisy = stability_score(model, parts.x, parts.masks, 0.2, seed=0, y=parts.y, half_size=4)
    colour, fixed, _, grain = (r["stability"] for r in noisy["prototypes"])
    louder = stability_score(model, parts.x, parts.masks, 0.5, seed=0, y=parts.y, half_size=4)

    assert exact["score"] == 1.0
    assert fixed == 1.0 and colour >= 0.95 and noisy["prototypes"][3]["images"] == 40
    # The grain detector's peak follows the noise, so the parts around it change.
    assert grain < 0.8
    assert louder["prototypes"][0]["stability"] < colour
    again = stability_score(model, parts.x, parts.masks, 0.2, seed=0, y=parts.y, half_size=4)
    assert again == noisy


def test_metrics_of_an_untrained_protopnet_are_shares(parts):
    torch.manual_seed(0)
    model = create_model("protopnet", input_shape=(3, 32, 32), num_classes=4, tiny=True)
    x = torch.from_numpy(parts.x[:40])
    consistency = consistency_score(model, x, parts.masks[:40], parts.y[:40], half_size=5)
    stability = stability_score(model, x, parts.masks[:40], y=parts.y[:40], half_size=5)

    rows, per_prototype = consistency["prototypes"], stability["prototypes"]
    assert len(rows) == len(per_prototype) == 8
    # Each prototype is judged on the images of its own class, by the paper's 0.8 threshold.
    images = [int((parts.y[:40] == c).sum()) for c in model.prototype_classes().tolist()]
    assert [r["images"] for r in rows] == [r["images"] for r in per_prototype] == images
    assert [r["consistent"] for r in rows] == [r["frequency"] >= 0.8 for r in rows]
    # The scores are shares: of consistent prototypes, and of stable (prototype, image) pairs.
    assert consistency["score"] == sum(r["consistent"] for r in rows) / len(rows)
    stable_pairs = sum(r["stability"] * r["images"] for r in per_prototype)
    assert stability["score"] == pytest.approx(stable_pairs / sum(images))


def test_mismatched_masks_are_rejected(parts, model):
    with pytest.raises(ValueError, match="masks"):
        activated_parts(model, parts.x[:4], parts.masks[:3])
