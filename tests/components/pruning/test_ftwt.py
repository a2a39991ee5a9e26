"""FTWT (components.pruning.ftwt): the heatmap-mass top-k, gating, MAC counts, predictors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from components.models import create_model
from components.pruning.ftwt import FtwtGates, gated_layers, mass_topk_mask
from components.pruning.ftwt_stage import evaluate_gating, fit_predictors
from components.training.batches import ShardBatches
from components.training.config import TrainConfig
from components.training.ftwt_config import FtwtConfig


def _activation(peaks: list[list[float]]) -> torch.Tensor:
    """Activations ``(N, C, 2, 2)`` whose heatmap score (spatial max of |a|) is ``peaks``."""
    x = torch.zeros(len(peaks), len(peaks[0]), 2, 2)
    x[:, :, 1, 0] = -torch.tensor(peaks)  # |.|: a negative peak counts by its magnitude
    x[:, :, 0, 1] = 0.5 * torch.tensor(peaks)
    return x


def test_mass_topk_keeps_the_fewest_filters_reaching_the_mass():
    # shares 0.4, 0.3, 0.2, 0.1: 0.5 needs two filters, 0.7 two (exactly), 0.75 three
    acts = _activation([[2.0, 4.0, 1.0, 3.0]])
    assert mass_topk_mask(acts, 0.5).tolist() == [[0, 1, 0, 1]]
    assert mass_topk_mask(acts, 0.7).tolist() == [[0, 1, 0, 1]]
    assert mass_topk_mask(acts, 0.75).tolist() == [[1, 1, 0, 1]]
    assert mass_topk_mask(acts, 1.0).tolist() == [[1, 1, 1, 1]]
    # per input: one dominant filter needs k=1; an all-zero input keeps none
    two = _activation([[9.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert mass_topk_mask(two, 0.9).tolist() == [[1, 0, 0, 0], [0, 0, 0, 0]]


def _tiny_cnn(channels=(3, 4)) -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn", input_shape=(2, 6, 6), num_classes=3, channels=channels).eval()


def test_gated_layer_computes_exactly_the_kept_channels():
    model = _tiny_cnn()
    x = torch.randn(5, 2, 6, 6)
    dense = model.features[:2](x)  # first conv + ReLU, ungated
    gates = FtwtGates(model, mass=0.6).attach()
    seen = {}
    model.features[1].register_forward_hook(lambda m, a, out: seen.update(out=out))
    gates.mode = "ground_truth"
    model(x)
    mask = mass_topk_mask(dense, 0.6)
    assert 0 < mask.sum() < mask.numel()  # some channels kept, some dropped
    kept = mask.bool()[:, :, None, None].expand_as(dense)
    assert torch.equal(seen["out"][kept], dense[kept])
    assert torch.all(seen["out"][~kept] == 0)
    gates.detach_hooks()
    assert torch.equal(model.features[:2](x), dense)


def test_measured_macs_match_a_hand_count():
    model = _tiny_cnn()
    gates = FtwtGates(model, mass=0.6).attach()
    gates.mode = "ground_truth"
    model(torch.randn(4, 2, 6, 6))
    k1, k2 = (m.sum(dim=1) for m in gates.record.masks)
    # conv1: k1 filters x 2 image channels x 9 weights x 6*6 positions; pool to 3x3;
    # conv2: k2 filters x k1 kept inputs x 9 x 3*3
    assert torch.equal(gates.macs_per_input(), k1 * 2 * 9 * 36 + k2 * k1 * 9 * 9)
    assert gates.dense_macs() == 3 * 2 * 9 * 36 + 4 * 3 * 9 * 9
    assert gates.predictor_macs == 2 * 3 + 3 * 4


def test_predictors_beat_the_best_static_mask_on_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).view(-1, 1, 8, 8)
    x, y = (x - x.mean()) / x.std(), torch.tensor(digits.target)
    torch.manual_seed(0)
    model = create_model("cnn", input_shape=(1, 8, 8), num_classes=10, channels=(8, 16))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(3):
        for start in range(0, 1400, 64):
            xb, yb = x[start : start + 64], y[start : start + 64]
            loss = model.loss(model(xb), xb, yb)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    gates = FtwtGates(model, mass=0.8).attach()
    batches = ShardBatches(x[:1400], y[:1400], batch_size=64, shuffle=True, seed=0)
    fit_predictors(model, gates, batches, FtwtConfig(mass=0.8, epochs=4))
    held_out = evaluate_gating(model, gates, x[1400:], y[1400:], mode="predicted")
    # the second layer reads 8 channels: its predictions depend on the input and beat the best
    # input-independent mask by a clear margin
    assert held_out["mask_accuracy"][1] > held_out["static_accuracy"][1] + 0.01


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"train\.ftwt\.mass=0"):
        TrainConfig(dynamic_pruning="ftwt", ftwt={"mass": 0})
    with pytest.raises(ValueError, match=r"unknown key\(s\) train\.ftwt\.masss"):
        TrainConfig(ftwt={"masss": 0.9})
    with pytest.raises(ValueError, match=r"train\.dynamic_pruning='lottery'"):
        TrainConfig(dynamic_pruning="lottery")
    assert TrainConfig(ftwt={"mass": 0.5}).ftwt == FtwtConfig(mass=0.5)


def test_a_model_without_a_conv_trunk_is_refused():
    from flows.config import ConfigError
    from flows.pipeline import check_gateable

    mlp = create_model("mlp", input_shape=(64,), num_classes=10, tiny=True)
    with pytest.raises(ConfigError, match="dynamic_pruning=ftwt: .*MLP has none: use model=cnn"):
        check_gateable(mlp)
    assert len(gated_layers(_tiny_cnn())) == 2
