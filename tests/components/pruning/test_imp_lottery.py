"""Iterative magnitude pruning (Frankle & Carbin 2019): per-round sparsity in closed form, masks
that stay zero through training, rewinding to the dense round's early weights, and resuming at
the next unfinished round."""

from __future__ import annotations

import math

import pytest
import torch

from components.data.reader import read_split
from components.pruning.imp_config import PruneConfig
from components.pruning.imp_masks import SparseStart, dense_masks, prunable_layers, prune_masks
from components.pruning.lottery import LotteryStore, run_lottery
from components.pruning.round_trainers import in_process_rounds
from components.search.space import tune_space
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig


def alive_after(count: int, rate: float, rounds: int) -> int:
    for _ in range(rounds):
        count -= math.ceil(rate * count)
    return count


def test_layerwise_rounds_prune_the_papers_rates_of_the_smallest_weights():
    torch.manual_seed(0)
    model = ModelSpec("cnn", (1, 8, 8), 10, tiny=True).build()
    kinds = prunable_layers(model)
    assert sorted(kinds.values()) == ["conv", "output"]
    config = PruneConfig(rate=0.2, conv_rate=0.1)  # output layer: 0.1 (half of fc)
    masks = dense_masks(model)
    for round_ in range(1, 4):
        weights = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
        new = prune_masks(masks, weights, kinds, config)
        for name, kind in kinds.items():
            rate = {"conv": 0.1, "output": 0.1}[kind]
            alive = int(masks[name].sum())
            assert int(new[name].sum()) == alive - math.ceil(rate * alive)
            dropped = (masks[name] - new[name]).bool()
            kept = new[name].bool()
            assert weights[name][dropped].abs().max() <= weights[name][kept].abs().min()
            assert not (new[name].bool() & ~masks[name].bool()).any()  # never revived
        masks = new
        total = model.get_parameter(next(iter(kinds))).numel()
        assert int(masks[next(iter(kinds))].sum()) == alive_after(total, 0.1, round_)


def test_global_scope_uses_one_threshold_across_layers():
    torch.manual_seed(0)
    model = ModelSpec("mlp", (1, 8, 8), 10, tiny=True).build()
    kinds = prunable_layers(model)
    masks = dense_masks(model)
    weights = {k: torch.randn_like(v) * (i + 1) for i, (k, v) in enumerate(masks.items())}
    new = prune_masks(masks, weights, kinds, PruneConfig(scope="global", rate=0.5))
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in new.values()) == total - math.ceil(0.5 * total)
    dropped = torch.cat([weights[k][~new[k].bool()].abs() for k in masks])
    kept = torch.cat([weights[k][new[k].bool()].abs() for k in masks])
    assert dropped.max() <= kept.min()


def test_rounds_keep_masks_zero_rewind_to_early_weights_and_resume(digits_dataset, tmp_path):
    spec = ModelSpec("mlp", (1, 8, 8), 10, tiny=True)
    cfg = TrainConfig(epochs=2, early_stopping_patience=0, lr=1e-2, seed=0)
    splits = [read_split(digits_dataset, s, limit=300) for s in ("train", "val", "test")]
    train_round = in_process_rounds(spec, cfg, *splits)
    starts: dict[str, SparseStart] = {}
    fits = {}

    def recording(tag, start, capture_epoch):
        starts[tag] = start
        fits[tag] = train_round(tag, start, capture_epoch)
        return fits[tag]

    store = LotteryStore(tmp_path / "prune")
    config = PruneConfig(rounds=1, rate=0.5, rewind_epoch=1)
    records = run_lottery(spec, config, recording, store)
    assert [r["round"] for r in records] == [0, 1]
    rewind = fits["round-0/ticket"].rewind  # the dense round's weights after epoch 1
    assert not torch.equal(rewind["net.1.weight"], store.load_weights("init")["net.1.weight"])
    ticket = starts["round-1/ticket"]
    for name, mask in ticket.masks.items():
        model = spec.build()
        ticket(model, True)
        start = model.state_dict()[name]
        assert torch.equal(start[mask.bool()], rewind[name][mask.bool()])
        assert (start[~mask.bool()] == 0).all()
        for tag in ("round-1/ticket", "round-1/control"):  # trained, and still zero off-mask
            trained = fits[tag].weights[name]
            assert (trained[~mask.bool()] == 0).all()
            assert not torch.equal(trained[mask.bool()], start[mask.bool()])
    # hidden layer 64x16 at rate 0.5, output layer 16x10 at half the rate
    alive = alive_after(64 * 16, 0.5, 1) + alive_after(16 * 10, 0.25, 1)
    assert records[1]["remaining"] == pytest.approx(alive / (64 * 16 + 16 * 10))

    starts.clear()
    more = run_lottery(spec, PruneConfig(rounds=2, rate=0.5, rewind_epoch=1), recording, store)
    assert sorted(starts) == ["round-2/control", "round-2/ticket"]  # rounds 0-1 not retrained
    assert more[:2] == records
    assert torch.equal(starts["round-2/ticket"].weights["net.1.weight"], rewind["net.1.weight"])
    with pytest.raises(ValueError, match="prune.rate"):
        run_lottery(spec, PruneConfig(rounds=2, rate=0.3, rewind_epoch=1), recording, store)


def test_sweep_pruning_keys_and_config_errors_name_the_key():
    assert set(tune_space({"prune": {"rate": {"type": "uniform", "low": 0.1, "high": 0.3}}})) == {
        "prune.rate"
    }
    # rounds is every trial's budget: not a dimension
    with pytest.raises(ValueError, match=r"'prune.rounds': prune.<field> must be one of"):
        tune_space({"prune.rounds": {"type": "randint", "low": 1, "high": 3}})
    with pytest.raises(ValueError, match=r"prune.rate=1.5.*prune.scope='row'"):
        PruneConfig(rate=1.5, scope="row")
