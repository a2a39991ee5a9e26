"""The ``segmentation`` trust check: config errors, Dice / IoU in closed form, CAM shares that
add up to the logit, a hand-built red-part detector whose CAM segments the red part of ``parts``
images far better than an untrained network, and "not applicable" on a dataset without masks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from components.data.ingest import ingest
from components.data.parts import generate_parts
from components.data.parts_folder import write_parts_folder
from components.data.reader import load_meta
from components.data.spec import DataSpec
from components.explain.checks import segmentation
from components.explain.checks.runner import CheckContext
from components.explain.checks.segmentation.eval import Split, map_kinds, segment
from components.explain.checks.segmentation.maps import grid_evidence
from components.explain.checks.segmentation.scores import dice_iou, object_masks
from components.explain.config import ExplainConfig
from components.models import create_model
from flows.config import compose


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"val_samples": 0}, "explain.segmentation.val_samples"),
        ({"test_samples": 2.5}, "explain.segmentation.test_samples"),
        ({"thresholds": True}, "explain.segmentation.thresholds"),
        ({"shown": 9, "test_samples": 8}, "explain.segmentation.shown"),
        ({"threshold": 0.5}, "unknown key(s) ['threshold']"),
    ],
)
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        ExplainConfig(checks=("segmentation",), segmentation=settings)


def test_the_configured_block_is_the_checks_defaults():
    block = OmegaConf.to_container(compose([]).explain.segmentation)
    assert block == segmentation.DEFAULTS
    segmentation.validate(block)


def test_dice_and_iou_in_closed_form():
    truth = np.zeros((2, 4, 4), bool)
    truth[0, :2] = True  # 8 pixels
    predicted = np.zeros((2, 4, 4), bool)
    predicted[0, 1:3] = True  # 8 pixels, 4 shared
    dice, iou = dice_iou(predicted, truth)  # image 1: both empty
    np.testing.assert_allclose(dice, [2 * 4 / 16, 1.0])
    np.testing.assert_allclose(iou, [4 / 12, 1.0])


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_cam_shares_add_up_to_the_logit(name):
    torch.manual_seed(0)
    model = create_model(name, input_shape=(3, 16, 16), num_classes=3, tiny=True).eval()
    x = torch.randn(5, 3, 16, 16)
    target = torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        logits = model(x).logits[torch.arange(5), target]
        shares = grid_evidence(model, x, target).sum(dim=(1, 2))
    bias = model.head[-1].bias[target]
    torch.testing.assert_close(shares + bias, logits, rtol=1e-5, atol=1e-5)


def test_object_masks_are_the_parts_of_the_class():
    data = generate_parts(12, 4, seed=1)
    meta = {"parts": list(data.task.parts), "class_parts": [
        [data.task.parts[k] for k in ks] for ks in data.task.class_parts]}  # fmt: skip
    truth = object_masks(data.masks, data.y, meta)
    for mask, labels, c in zip(truth, data.masks, data.y, strict=True):
        wanted = np.isin(labels, [k + 1 for k in data.task.class_parts[c]])
        assert (mask == wanted).all() and mask.any()
        assert not mask[labels > len(data.task.parts) - 2].any()  # distractors: background


def _red_detector():
    """A cnn whose one conv channel is R - G - B (positive only on the red part), read by every
    class with weight 1: its CAM is the red part."""
    model = create_model("cnn", input_shape=(3, 32, 32), num_classes=4, tiny=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.features[0].weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
        model.head[-1].weight.view(4, 4, 16, 16)[:, 0] = 1.0
    return model


def test_a_red_part_detector_segments_the_red_part_and_an_untrained_network_does_not():
    data = generate_parts(120, 4, seed=0)
    red = (data.masks == 1).any(axis=(1, 2))  # red_square is part 1
    x, truth = data.x[red], data.masks[red] == 1
    torch.manual_seed(0)
    untrained = create_model("cnn", input_shape=(3, 32, 32), num_classes=4, tiny=True)
    kinds = map_kinds(_red_detector(), untrained.eval(), ig_steps=8)
    half = len(x) // 2
    result = segment(kinds, Split(x[:half], truth[:half]), Split(x[half:], truth[half:]), 19)
    ours, theirs = result["kinds"]["model"]["test"], result["kinds"]["untrained"]["test"]
    assert result["kinds"]["model"]["label"] == "CAM"
    # measured: CAM 0.86 (the 16x16 grid blurs the edges), IG 0.51, untrained 0.06
    assert ours["dice"] > 0.8 and ours["dice"] > theirs["dice"] + 0.5, (ours, theirs)
    assert ours["iou"] < ours["dice"]  # IoU = D / (2 - D) < D for 0 < D < 1


def test_a_dataset_without_masks_is_not_applicable(tmp_path):
    folder = write_parts_folder(tmp_path / "images", num_samples=40, val_fraction=0.2)
    path = ingest(DataSpec(source="image_folder", path=str(folder), image_size=32), tmp_path).path
    model = create_model("cnn", input_shape=(3, 32, 32), num_classes=4, tiny=True)
    context = CheckContext(
        model=model, checkpoint=tmp_path, dataset_path=path, meta=load_meta(path), config=None
    )
    result = segmentation.run(context)
    assert result["verdict"].startswith("not applicable: the dataset has no masks")
    assert result["summary"] == {"applicable": False}
