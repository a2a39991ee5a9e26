"""A configurable DARTS op set (``search.darts.ops``) and the S-ConvKAN ``kan_conv`` op."""

from __future__ import annotations

import pytest
import torch

from components.models import create_model
from components.models.nas_cells import SuperNet, num_edges
from components.models.nas_ops import Genotype
from components.search.darts import DartsConfig, derive_genotype, sample_genotype
from flows.config import ConfigError, to_search_settings
from flows.sweep import compose_sweep

OPS = ("none", "skip_connect", "sep_conv_3x3", "kan_conv")


def test_kan_conv_supernet_derives_and_retrains_a_kan_genotype():
    torch.manual_seed(0)
    net = SuperNet(1, 10, 2, 3, 2, ops=OPS)
    assert net.alpha_normal.shape == (num_edges(2), len(OPS))
    net(torch.randn(4, 1, 8, 8)).sum().backward()
    kan = net.cells[0].edges[0].ops[OPS.index("kan_conv")]
    assert kan[0].kan.coefficients["bspline"].grad.abs().sum() > 0  # the mixed edge trains it
    alpha = torch.zeros(num_edges(2), len(OPS))
    alpha[:, OPS.index("none")] = 9.0  # never chosen
    alpha[:, OPS.index("kan_conv")] = 5.0
    alpha[0, OPS.index("skip_connect")] = 6.0
    genotype = derive_genotype(alpha, alpha, ops=OPS).validate()
    assert genotype.normal[:2] == (("skip_connect", 0), ("kan_conv", 1))
    # The supernet runs the genotype's path on its shared weights, and darts_net retrains it.
    assert net(torch.randn(4, 1, 8, 8), genotype).shape == (4, 10)
    model = create_model(
        "darts_net", input_shape=(1, 8, 8), num_classes=10, genotype=genotype.to_dict(), channels=2
    )
    assert model(torch.randn(3, 1, 8, 8)).logits.shape == (3, 10)
    sampled = sample_genotype(2, torch.Generator().manual_seed(0), ops=("none", "kan_conv"))
    assert {op for op, _ in sampled.normal + sampled.reduce} == {"kan_conv"}


def test_op_set_defaults_and_refusals():
    assert DartsConfig(ops=list(OPS)).ops == OPS  # a config list becomes the tuple
    with pytest.raises(ValueError, match="unknown op 'conv_9x9'"):
        DartsConfig(ops=("none", "conv_9x9"))
    with pytest.raises(ValueError, match="at least one other than none"):
        DartsConfig(ops=("none",))
    with pytest.raises(ValueError, match="invalid op 'kan_conv_5x5'"):
        cell = (("kan_conv_5x5", 0), ("skip_connect", 1))
        Genotype(normal=cell, reduce=cell).validate()
    settings = to_search_settings(
        compose_sweep(["search=darts", "search.darts.ops=[none,skip_connect,kan_conv]"])
    )
    assert settings.darts["ops"] == ["none", "skip_connect", "kan_conv"]
    with pytest.raises(ConfigError, match=r"search\.darts\.ops has unknown op 'kan'"):
        to_search_settings(compose_sweep(["search=random_ws", "search.darts.ops=[none,kan]"]))
