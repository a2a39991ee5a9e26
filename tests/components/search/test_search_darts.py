"""DARTS, SD-DARTS and random search with weight sharing on digits."""

from __future__ import annotations

import json
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from components.models.nas_cells import SuperNet, num_edges
from components.models.nas_ops import PRIMITIVES
from components.search import darts
from components.search.darts import (
    DartsConfig,
    DerivedNetwork,
    Genotype,
    derive_genotype,
    search_darts,
    search_random_ws,
)

FAST = DartsConfig(epochs=1, channels=4, cells=3, nodes=3, alpha_lr=3e-3, seed=0)


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = data.data.astype(np.float32)
    x = ((x - x.mean(0)) / (x.std(0) + 1e-6)).reshape(-1, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    return x_tr[:600], y_tr[:600], x_te[:300], y_te[:300], x_tr[600:], y_tr[600:]


def _assert_valid(genotype: Genotype, nodes: int) -> None:
    assert genotype.validate() is genotype
    for cell in (genotype.normal, genotype.reduce):
        assert len(cell) == 2 * nodes
        for node in range(nodes):
            (op_a, src_a), (op_b, src_b) = cell[2 * node : 2 * node + 2]
            assert src_a != src_b and max(src_a, src_b) < node + 2
            assert {op_a, op_b} <= set(PRIMITIVES) - {"none"}


def test_genotype_json_roundtrip_and_validation():
    genotype = Genotype(
        normal=(("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("dil_conv_3x3", 2)),
        reduce=(("avg_pool_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 1), ("none", 2)),
    )
    with pytest.raises(ValueError, match="invalid op"):
        genotype.validate()
    good = Genotype(normal=genotype.normal, reduce=genotype.normal)
    assert Genotype.from_dict(json.loads(json.dumps(good.to_dict()))) == good
    net = DerivedNetwork(input_shape=(1, 8, 8), num_classes=10, genotype=good.to_dict(), channels=4)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="cells"):
        DerivedNetwork(input_shape=(1, 8, 8), num_classes=10, genotype=good, cells=2)
    with pytest.raises(ValueError, match="earlier node"):
        Genotype(
            normal=(("skip_connect", 0), ("skip_connect", 2)), reduce=good.reduce[:2]
        ).validate()


def test_derive_genotype_keeps_top2_edges_and_never_none():
    alpha = torch.zeros(num_edges(2), len(PRIMITIVES))
    alpha[:, PRIMITIVES.index("none")] = 10.0  # "none" dominates every edge but is never chosen
    alpha[1, PRIMITIVES.index("sep_conv_3x3")] = 5.0  # node 0: edges 0 and 1 (its only inputs)
    alpha[0, PRIMITIVES.index("max_pool_3x3")] = 4.0
    alpha[4, PRIMITIVES.index("dil_conv_3x3")] = 5.0  # node 1: input 2 and input 0 beat input 1
    alpha[2, PRIMITIVES.index("skip_connect")] = 4.0
    alpha[3, PRIMITIVES.index("avg_pool_3x3")] = 1.0
    genotype = derive_genotype(alpha, alpha)
    assert genotype.normal == (
        ("max_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    )


@pytest.mark.slow
def test_darts_first_order_learns_alphas_and_derived_net_beats_chance(digits):
    x_tr, y_tr, x_va, y_va, x_te, y_te = digits
    reports = []
    result = search_darts(
        x_tr, y_tr, x_va, y_va, num_classes=10, config=FAST, report=reports.append
    )
    torch.manual_seed(FAST.seed)
    init = SuperNet(1, 10, FAST.channels, FAST.cells, FAST.nodes)
    moved = np.abs(
        np.array(result.alphas["normal"]) - init.alpha_normal.detach().softmax(-1).numpy()
    )
    assert moved.max() > 1e-3
    assert reports == result.history and len(result.history) == FAST.epochs
    assert result.history[-1]["val_acc"] > 0.25  # the supernet itself learns (chance is 0.1)
    _assert_valid(result.genotype, FAST.nodes)

    torch.manual_seed(0)
    net = DerivedNetwork(
        input_shape=(1, 8, 8), num_classes=10, genotype=result.genotype, channels=8, cells=3
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    for _ in range(4):
        for idx in torch.randperm(len(x)).split(32):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(torch.from_numpy(x_te)).argmax(-1).numpy() == y_te).mean()
    assert acc > 0.6  # chance is 0.1


def _unrolled_exact(model, train, val, xi):
    """The unrolled gradient by double backprop (no momentum, no weight decay)."""
    names = [n for n, _ in model.named_parameters() if not n.startswith("alpha_")]
    weights, alphas = model.weight_parameters(), model.arch_parameters()
    loss = F.cross_entropy(model(train[0]), train[1])
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    unrolled = {n: w - xi * g for n, w, g in zip(names, weights, grads, strict=True)}
    val_loss = F.cross_entropy(torch.func.functional_call(model, unrolled, (val[0],)), val[1])
    return torch.autograd.grad(val_loss, alphas)


def _smooth(module: nn.Module) -> None:
    """Swap ReLU/max-pool for Softplus/avg-pool so the loss is smooth in the weights.

    The finite difference in DARTS' Hessian-vector product crosses ReLU and max-pool kinks, so it
    only agrees with the exact unrolled gradient (double backprop) on a smooth network.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Softplus())
        elif isinstance(child, nn.MaxPool2d):
            setattr(module, name, nn.AvgPool2d(3, child.stride, 1))
        else:
            _smooth(child)


def test_second_order_matches_exact_unrolled_gradient_and_differs_from_first():
    torch.manual_seed(0)
    model = SuperNet(1, 10, 3, 3, 2).double()
    _smooth(model)
    train = torch.randn(32, 1, 8, 8, dtype=torch.float64), torch.randint(10, (32,))
    val = torch.randn(32, 1, 8, 8, dtype=torch.float64), torch.randint(10, (32,))
    config = DartsConfig(order=2, w_weight_decay=0.0)
    opt = torch.optim.SGD(model.weight_parameters(), lr=0.5)  # no momentum buffer yet
    xi = 0.5
    approx = darts._unrolled_arch_grad(model, opt, train, val, xi, config)
    exact = _unrolled_exact(model, train, val, xi)
    first = torch.autograd.grad(F.cross_entropy(model(val[0]), val[1]), model.arch_parameters())
    for a, e, f in zip(approx, exact, first, strict=True):
        assert (a - e).norm() / e.norm() < 1e-2
        assert (f - e).norm() / e.norm() > 0.3  # the Hessian term matters


def test_second_order_search_differs_from_first_order(digits):
    x_tr, y_tr, x_va, y_va, *_ = digits
    one = DartsConfig(epochs=1, channels=3, cells=3, nodes=2, alpha_lr=3e-3)
    two = DartsConfig(epochs=1, channels=3, cells=3, nodes=2, alpha_lr=3e-3, order=2)
    args = x_tr[:256], y_tr[:256], x_va[:128], y_va[:128]
    first = search_darts(*args, num_classes=10, config=one)
    second = search_darts(*args, num_classes=10, config=two)
    assert not np.allclose(first.alphas["normal"], second.alphas["normal"], atol=1e-5)
    _assert_valid(second.genotype, 2)


def test_sd_darts_reports_nonzero_distillation(digits):
    x_tr, y_tr, x_va, y_va, *_ = digits
    config = DartsConfig(epochs=1, channels=3, cells=3, nodes=2, sd=True, sd_teachers=3)
    args = x_tr[:256], y_tr[:256], x_va[:128], y_va[:128]
    result = search_darts(*args, num_classes=10, config=config)
    assert all(h["distill"] > 0 and h["distill_last"] > 0 for h in result.history)
    plain = search_darts(
        *args, num_classes=10, config=DartsConfig(**{**config.__dict__, "sd": False})
    )
    assert all(h["distill"] == 0 for h in plain.history)


def test_voting_distillation_is_zero_when_teachers_equal_student(digits):
    torch.manual_seed(0)
    model = SuperNet(1, 10, 3, 3, 2)
    x = torch.from_numpy(digits[0][:16])
    snap = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(x)
    kl = darts._voting_distillation(model, deque([snap, snap]), x, logits, 2.0)
    assert kl.abs().item() < 1e-5
    with torch.no_grad():
        model.classifier.bias.add_(torch.arange(10.0))
    assert darts._voting_distillation(model, deque([snap]), x, model(x), 2.0).item() > 0.1


def test_random_ws_is_valid_ranks_candidates_and_is_deterministic(digits):
    x_tr, y_tr, x_va, y_va, *_ = digits
    config = DartsConfig(epochs=1, channels=3, cells=3, nodes=3, seed=3)
    args = x_tr[:256], y_tr[:256], x_va[:128], y_va[:128]
    result = search_random_ws(*args, num_classes=10, config=config, num_candidates=12)
    again = search_random_ws(*args, num_classes=10, config=config, num_candidates=12)
    _assert_valid(result.genotype, 3)
    ranking = result.history[-1]
    assert ranking["candidates"] > 1 and ranking["best_val_loss"] < ranking["worst_val_loss"]
    assert result.genotype == again.genotype and result.history == again.history


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="order"):
        DartsConfig(order=3)
    with pytest.raises(ValueError, match="nodes"):
        DartsConfig(nodes=1)
    with pytest.raises(ValueError, match="cells"):
        DartsConfig(cells=2)
