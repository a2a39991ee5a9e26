"""BossNAS: ensemble bootstrapping, the momentum target, path rating, the searched network."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from components.data.reader import read_split
from components.models import create_model
from components.models.hytra import block_paths
from components.search.best import check_retrain_model
from components.search.bossnas import (
    BossNASConfig,
    bossnas_config,
    ensemble_target,
    momentum_at,
    rate_paths,
    search_bossnas,
)
from components.ssl.learner import ema_update

TINY = BossNASConfig(
    epochs=1,
    blocks=2,
    layers=1,
    levels=2,
    width=4,
    expansion=2,
    heads=1,
    paths=2,
    projection_dim=8,
    batch_size=32,
)


def test_ensemble_target_is_the_mean_of_the_normalised_projections():
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [0.0, -5.0]])
    expected = torch.tensor([[0.3, 0.9], [0.5, -0.5]])  # (0.6, 0.8) & (0, 1); (1, 0) & (0, -1)
    assert torch.allclose(ensemble_target([a, b]), expected)


def test_momentum_update_is_exactly_the_ema_on_the_cosine_schedule():
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, 0.99)
    for t, t0, o in zip(target.parameters(), before, online.parameters(), strict=True):
        assert torch.allclose(t, t0 * 0.99 + o.detach() * (1 - 0.99), rtol=1e-6, atol=1e-8)
    assert momentum_at(0, 10, 0.99) == pytest.approx(0.99)
    assert momentum_at(5, 10, 0.99) == pytest.approx(0.995)
    assert momentum_at(10, 10, 0.99) == pytest.approx(1.0)


def test_rating_picks_the_path_closest_to_the_ensemble():
    e1, e2 = torch.eye(2)
    paths = [(("conv", 0),), (("attn", 1),), (("conv", 1),)]
    # Target projections of the three paths on both views: the ensemble points along (1, 1).
    projections = {paths[0]: (e1[None], e1[None]), paths[1]: (e2[None], e2[None])}
    projections[paths[2]] = ((e1 + e2)[None], (e1 + e2)[None])
    predictions = {
        paths[0]: (e1[None], e1[None]),  # 45 degrees off the ensemble
        paths[1]: (-e2[None], e2[None]),  # one view opposite
        paths[2]: (torch.tensor([[2.0, 2.0]]), torch.tensor([[0.5, 0.5]])),  # on it
    }
    ratings = rate_paths(predictions, projections)
    assert min(ratings, key=ratings.get) == paths[2]
    assert ratings[paths[2]] == pytest.approx(0.0, abs=1e-6)
    assert ratings[paths[0]] == pytest.approx(2 * (2 - math.sqrt(2)))


def test_block_paths_follow_the_fabric():
    # Two layers from level 0 over 3 levels, attention from level 1: stay/stay (conv only),
    # stay/down, down/stay, down/down; each layer at level >= 1 has two ops.
    paths = block_paths(0, 2, 3, 1)
    assert len(paths) == 1 + 2 + 4 + 4
    assert all(b[1] - a[1] in (0, 1) for p in paths for a, b in zip(p, p[1:], strict=False))
    assert not any(op == "attn" and level == 0 for p in paths for op, level in p)


def test_search_is_seeded_and_its_architecture_builds_and_trains(digits_dataset):
    x, _ = read_split(digits_dataset, "train", limit=96)
    vx, _ = read_split(digits_dataset, "val", limit=32)
    rows: list[dict] = []
    first = search_bossnas(x, vx, config=TINY, report=rows.append)
    again = search_bossnas(x, vx, config=TINY)
    assert first.to_dict() == again.to_dict()
    assert [r["epoch"] for r in rows] == [0.0, 1.0] and [r["block"] for r in rows] == [0.0, 1.0]
    for block, ratings in zip(first.blocks, first.ratings, strict=True):
        assert " ".join(f"{op}@{lv}" for op, lv in block) == next(iter(ratings))  # best first
    assert first.blocks[1][0][1] in (first.blocks[0][-1][1], first.blocks[0][-1][1] + 1)
    torch.manual_seed(0)
    model = create_model(
        "bossnas_net", input_shape=(1, 8, 8), num_classes=10, architecture=first.to_dict()
    )
    logits = model(torch.as_tensor(x[:5])).logits
    assert logits.shape == (5, 10)
    logits.sum().backward()  # every searched layer is in the graph
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"paths": 1}, "search.bossnas.paths"),
        ({"momentum": 1.0}, "search.bossnas.momentum"),
        ({"epochs": 0}, "search.bossnas.epochs"),
        ({"heads": 3}, "search.bossnas.heads"),
        ({"path": 4}, "search.bossnas.path "),
    ],
)
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        bossnas_config(settings)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({}, r"model\.params\.architecture .*missing"),
        ({"architecture": {"blocks": [[["conv", 2]]]}}, r"architecture .*follows level 0"),
        ({"architecture": {"blocks": [[["pool", 0]]]}}, r"architecture .*\['pool', 0\]"),
        ({"architecture": {"blocks": [[["attn", 0]]]}, "heads": 3}, r"model\.params\.heads=3"),
    ],
)
def test_bad_model_params_name_the_key(params, match):
    with pytest.raises(ValueError, match=match):
        create_model("bossnas_net", input_shape=(1, 8, 8), num_classes=3, **params)


def test_refusals_point_to_what_fits():
    with pytest.raises(ValueError, match=r"\(C, H, W\).*'mlp'"):
        create_model("bossnas_net", input_shape=(13,), num_classes=2, tiny=True)
    with pytest.raises(ValueError, match="search=bossnas .* model=bossnas_net, not model=cnn"):
        check_retrain_model("bossnas", "cnn")
    check_retrain_model("darts", "cnn")  # other methods are not this check's business
