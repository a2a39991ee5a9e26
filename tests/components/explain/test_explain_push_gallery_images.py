"""Prototype regions on inputs: ProtoPNet's 95th-percentile box of the upsampled similarity map,
on the pushed gallery's source images and on explained test samples, for images and signals."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from components.explain import explain_model
from components.explain.push_gallery import (
    add_sample_regions,
    high_activation_boxes,
    pushed_gallery,
)
from components.models import create_model
from components.models.base import PrototypeExplanation, PrototypeModel
from components.training.push import push_prototypes


def _brute_force_box(upsampled: np.ndarray, percentile: float = 95.0):
    """The reference code's find_high_activation_crop, loop by loop."""
    threshold = np.percentile(upsampled, percentile)
    hot_rows = [i for i in range(upsampled.shape[0]) if (upsampled[i] >= threshold).any()]
    hot_cols = [j for j in range(upsampled.shape[1]) if (upsampled[:, j] >= threshold).any()]
    return hot_rows[0], hot_cols[0], hot_rows[-1] + 1 - hot_rows[0], hot_cols[-1] + 1 - hot_cols[0]


def test_the_box_of_one_hot_cell_is_centred_on_it_and_holds_the_top_five_percent():
    similarity = torch.zeros(1, 7, 7)
    similarity[0, 2, 4] = 5.0  # cell (2, 4) of a 7x7 grid over a 224x224 image: 32 px per cell
    top, left, height, width = high_activation_boxes(similarity, (224, 224))[0]
    # cell centres sit at pixel (c + 0.5) * 32 - 0.5; bicubic is symmetric about them
    assert (top + (height - 1) / 2, left + (width - 1) / 2) == (79.5, 143.5)
    assert height * width >= 0.05 * 224 * 224  # every pixel at or above the percentile is inside
    assert height < 3 * 32 and width < 3 * 32  # and nothing beyond the peak's neighbours
    upsampled = F.interpolate(similarity[None], size=(224, 224), mode="bicubic")[0, 0].numpy()
    assert (top, left, height, width) == _brute_force_box(upsampled)


def test_the_box_spans_every_hot_region_as_protopnet_does():
    similarity = torch.zeros(1, 7, 7)
    similarity[0, 0, 0] = similarity[0, 6, 6] = 5.0
    top, left, height, width = high_activation_boxes(similarity, (224, 224))[0]
    assert top == left == 224 - (top + height) == 224 - (left + width)
    assert top < 16 and height > 224 - 32  # from the first cell's centre area to the last's


def test_a_signal_map_gives_a_segment_centred_on_its_peak():
    similarity = torch.zeros(1, 1, 10)
    similarity[0, 0, 3] = 2.0  # position 3 of 10 over a signal of length 80: 8 per position
    top, left, height, width = high_activation_boxes(similarity, (1, 80))[0]
    assert (top, height) == (0, 1)
    assert left + (width - 1) / 2 == 3.5 * 8 - 0.5
    assert width >= 0.05 * 80


@pytest.fixture(scope="module")
def pushed_protopnet():
    torch.manual_seed(0)
    model = create_model("protopnet", input_shape=(3, 32, 32), num_classes=3, tiny=True)
    x, y = torch.randn(24, 3, 32, 32), torch.arange(24) % 3
    push_prototypes(model, [(x, y, torch.arange(24))], torch.device("cpu"))
    return model.eval(), x, y


def test_every_pushed_prototype_is_boxed_inside_its_source_image_around_its_patch(
    pushed_protopnet,
):
    model, x, _ = pushed_protopnet
    gallery = pushed_gallery(model, x[model.push_sample].numpy())
    grid_h, grid_w = model.latent_grid
    assert gallery["maps"].shape == (len(model.prototypes), grid_h, grid_w)
    for box, (row, col) in zip(gallery["boxes"], model.push_location.tolist(), strict=True):
        top, left, height, width = box
        assert top >= 0 and left >= 0 and height >= 1 and width >= 1
        assert top + height <= 32 and left + width <= 32
        # the pushed patch is the prototype itself (distance 0): its cell centre is in the box
        centre = ((row + 0.5) * 32 / grid_h - 0.5, (col + 0.5) * 32 / grid_w - 0.5)
        assert top <= centre[0] <= top + height - 1 and left <= centre[1] <= left + width - 1


def test_each_explained_prototype_gets_the_box_of_its_own_map_on_the_sample(pushed_protopnet):
    model, x, y = pushed_protopnet
    result = explain_model(
        model, x, y, num_samples=3, top_k=2, ig_steps=2, pushed_images=x[model.push_sample]
    )
    maps = model.activation_maps(torch.as_tensor(result["inputs"]))
    for row, sample in enumerate(result["samples"]):
        for proto in sample["prototypes"]:
            expected = high_activation_boxes(maps[row, proto["index"]][None], (32, 32))[0]
            assert tuple(proto["box"]) == expected
    assert result["gallery"]["boxes"] and result["gallery"]["maps"] is not None


class SignalPrototypes(PrototypeModel):
    """A minimal 1-D part-prototype model: two prototypes, one per class, over a conv grid."""

    def __init__(self, channels: int = 2, length: int = 40) -> None:
        super().__init__()
        self.input_shape = (channels, length)
        self.conv = nn.Conv1d(channels, 4, kernel_size=4, stride=4)
        self.prototype_vectors = nn.Parameter(torch.randn(2, 4))
        self.register_buffer("push_sample", torch.tensor([0, 1]))
        self.register_buffer("push_location", torch.tensor([[0, 2], [0, 7]]))
        self.register_buffer("pushed", torch.ones(2, dtype=torch.bool))

    @property
    def prototypes(self) -> torch.Tensor:
        return self.prototype_vectors

    def prototype_classes(self) -> torch.Tensor:
        return torch.tensor([0, 1])

    def activation_maps(self, x: torch.Tensor) -> torch.Tensor:
        latent = self.conv(x)  # (N, 4, l)
        distance = (latent[:, None] - self.prototype_vectors[None, :, :, None]).pow(2).sum(2)
        return -distance[:, :, None, :]  # (N, P, 1, l)

    def forward(self, x):
        from components.models.base import ModelOutput

        return ModelOutput(logits=self.activation_maps(x).amax(dim=(2, 3)))

    def explain(self, x: torch.Tensor, top_k: int = 3) -> list[PrototypeExplanation]:
        similarities = self.activation_maps(x).amax(dim=(2, 3))
        explanations = []
        for row in similarities:
            k = int(row.argmax())
            order = row.abs().argsort(descending=True)[:top_k].tolist()
            contributions = [float(row[j]) if j == k else 0.0 for j in order]
            explanations.append(
                PrototypeExplanation(
                    class_index=k,
                    logit=float(row[k]),
                    bias=0.0,
                    prototype_indices=order,
                    distances=[float(-row[j]) for j in order],
                    similarities=[float(row[j]) for j in order],
                    contributions=contributions,
                    total_contribution=float(row[k]),
                )
            )
        return explanations


def test_signal_prototypes_get_segments_inside_the_signal():
    torch.manual_seed(0)
    model = SignalPrototypes().eval()
    x, y = torch.randn(6, 2, 40), torch.tensor([0, 1, 0, 1, 0, 1])
    gallery = pushed_gallery(model, x[:2].numpy())
    samples = explain_model(model, x, y, num_samples=2, top_k=2, ig_steps=2)["samples"]
    add_sample_regions(model, x[[s["index"] for s in samples]], samples)
    boxes = gallery["boxes"] + [p["box"] for s in samples for p in s["prototypes"]]
    for top, left, height, width in boxes:
        assert (top, height) == (0, 1)
        assert left >= 0 and width >= 2 and left + width <= 40
    own = model.activation_maps(x[:2])[[0, 1], [0, 1]]
    assert gallery["boxes"] == high_activation_boxes(own, (1, 40))
