"""Scaled MLP (Bachmann et al. 2023): the pre-LayerNorm residual block, its size, refusals."""

import pytest
import torch

from components.models import create_model
from components.models.mlp_scaled import BottleneckBlock, MLPScaledConfig, parameter_count


def test_block_with_zeroed_output_projection_is_the_identity():
    torch.manual_seed(0)
    block = BottleneckBlock(width=6, expansion=4)
    with torch.no_grad():
        block.down.weight.zero_()
        block.down.bias.zero_()
    z = torch.randn(5, 6)
    assert torch.equal(block(z), z)


def test_block_branch_sees_the_layer_normalised_stream():
    # Pre-LN: the residual branch reads LayerNorm(z), so rescaling z leaves the branch's output
    # unchanged (a post-LN or norm-free block would not be scale-invariant).
    torch.manual_seed(0)
    block = BottleneckBlock(width=6, expansion=4).double()
    z = torch.randn(5, 6, dtype=torch.float64)
    expected = block.down(torch.nn.functional.gelu(block.up(block.norm(z))))
    assert torch.allclose(block(z) - z, expected)
    assert torch.allclose(block(7.0 * z) - 7.0 * z, expected, atol=1e-4)  # LayerNorm eps


@pytest.mark.parametrize(
    ("shape", "config"),
    [((3, 4, 4), MLPScaledConfig(width=5, depth=2, expansion=3)), ((13,), MLPScaledConfig())],
)
def test_parameter_count_formula_matches_the_module(shape, config):
    model = create_model("mlp_scaled", input_shape=shape, num_classes=7, **vars(config))
    counted = sum(p.numel() for p in model.parameters())
    d_in = 1
    for n in shape:
        d_in *= n
    assert parameter_count(d_in, 7, config) == counted


@pytest.mark.parametrize(
    ("key", "value"), [("width", 0), ("depth", -1), ("expansion", 1.5), ("dropout", 1.0)]
)
def test_bad_params_name_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        create_model("mlp_scaled", input_shape=(1, 8, 8), num_classes=10, **{key: value})
