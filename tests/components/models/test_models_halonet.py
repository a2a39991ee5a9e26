"""HaloNet trunks: blocked local self-attention with halos (Vaswani et al. 2021)."""

import pytest
import torch

from components.models import create_model
from components.models.halonet import HaloAttention, HaloNetTrunk


@pytest.mark.parametrize(
    ("size", "block", "halo", "stride"),
    [((8, 8), 4, 1, 1), ((7, 10), 4, 2, 2), ((5, 6), 2, 3, 1)],
)
def test_blocked_attention_is_global_attention_masked_to_block_and_halo(size, block, halo, stride):
    # The defining invariant: each query block attends exactly to its (b + 2h)^2 haloed window
    # (zero padding beyond the image, unmasked, as the paper), with the same relative logits.
    torch.manual_seed(0)
    layer = HaloAttention(8, heads=2, block_size=block, halo_size=halo, stride=stride).double()
    x = torch.randn(2, 8, *size, dtype=torch.double)
    blocked = layer.blocked(x)
    expected = tuple(-(-n // stride) for n in size)  # ceil: padded, strided, cropped back
    assert blocked.shape == (2, 8, *expected)
    assert torch.allclose(blocked, layer.global_attention(x, masked=True), atol=1e-5)
    # unmasked global attention sees more than the window: the mask is what makes it local
    assert not torch.allclose(blocked, layer.global_attention(x, masked=False), atol=1e-3)


def test_a_query_sees_nothing_beyond_its_halo():
    torch.manual_seed(0)
    layer = HaloAttention(4, heads=1, block_size=2, halo_size=1)
    x = torch.randn(1, 4, 8, 8)
    moved = x.clone()
    moved[:, :, 5, 5] += 10.0  # block k covers rows 2k..2k+1, its window rows 2k-1..2k+2
    diff = (layer(moved) - layer(x)).abs().amax(dim=1)[0]
    changed = {(r, c) for r in range(8) for c in range(8) if diff[r, c] > 0}
    # only blocks 2 and 3 (windows 3-6 and 5-8) hold row/col 5: their outputs, rows/cols 4-7
    assert changed == {(r, c) for r in range(4, 8) for c in range(4, 8)}


@pytest.mark.parametrize("name", ["halonet_tiny", "halonet_small"])
def test_trunk_grid_matches_its_output_for_rgb_and_grey_images(name):
    for channels, (height, width) in ((3, (32, 32)), (1, (30, 17))):
        trunk = HaloNetTrunk(name, channels).eval()
        out = trunk(torch.randn(1, channels, height, width))
        assert out.shape == (1, trunk.out_channels, *trunk.grid_size(height, width))
    assert trunk.grid_size(32, 32) == (8, 8)  # stem and one strided stage: 32 -> 8


@pytest.mark.parametrize("model", ["protopnet", "st_protopnet", "resnet"])
def test_models_build_and_run_on_a_halonet_trunk(model):
    net = create_model(
        model, input_shape=(3, 16, 16), num_classes=3, tiny=True, backbone="halonet_tiny"
    )
    assert isinstance(net.features, HaloNetTrunk)
    assert net(torch.randn(2, 3, 16, 16)).logits.shape == (2, 3)


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("protopnet", {"pretrained": "w.pth"}, "'halonet_tiny' is trained from scratch"),
        ("resnet", {"pretrained": "w.pth"}, "'halonet_tiny' is trained from scratch"),
        ("protopnet", {"input": (2, 40)}, r"2-D images \(C, H, W\).*use backbone=conv"),
        ("resnet", {"input": (2, 40)}, r"2-D images \(C, H, W\).*use backbone=conv"),
    ],
)
def test_bad_halonet_settings_are_clear_errors(model, params, message):
    shape = params.pop("input", (3, 16, 16))
    with pytest.raises(ValueError, match=message):
        create_model(model, input_shape=shape, num_classes=3, backbone="halonet_tiny", **params)
