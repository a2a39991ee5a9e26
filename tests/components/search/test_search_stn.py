"""Self-Tuning Networks: best-response layers, relaxed regularisers and the tuning loop."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from components.search.stn import STNConfig, train_fixed, train_stn
from components.search.stn_layers import (
    MAX_DROPOUT,
    MAX_NOISE,
    SCALE_RANGE,
    SHIFTS,
    WEIGHT_DECAY_RANGE,
    StnHyperparameters,
    StnLinear,
    dropout,
    random_shift,
)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std[std == 0] = 1.0
    images = [((a - mean) / std).reshape(-1, 1, 8, 8).astype(np.float32) for a in (x_tr, x_va)]
    return images[0], y_tr, images[1], y_va


def test_stn_linear_without_hyper_gate_is_the_general_linear_map():
    gen = torch.Generator().manual_seed(0)
    layer = StnLinear(5, 3, 4, gen)
    x, hyper = torch.randn(7, 5), torch.randn(7, 4)
    with torch.no_grad():
        layer.hyper_gate.zero_()
    expected = x @ layer.general_weight.T + layer.general_bias
    torch.testing.assert_close(layer(x, hyper), expected)
    with torch.no_grad():
        layer.hyper_gate.fill_(1.0)
    response = x @ layer.response_weight.T + layer.response_bias
    scale = hyper.sum(1, keepdim=True)
    torch.testing.assert_close(layer(x, hyper), expected + response * scale)


def test_concrete_dropout_is_differentiable_in_the_rate_and_unbiased():
    gen = torch.Generator().manual_seed(0)
    rate = torch.full((4000,), 0.6, requires_grad=True)
    out = dropout(torch.ones(4000, 8), rate, gen, temperature=0.1)
    out.sum().backward()
    assert rate.grad is not None and rate.grad.abs().sum() > 0
    assert abs(out.mean().item() - 1.0) < 0.05
    hard = dropout(torch.ones(4000, 8), rate.detach(), gen)
    assert torch.all((hard == 0) | torch.isclose(hard, torch.tensor(1 / 0.4)))
    torch.testing.assert_close(dropout(torch.ones(3, 2), torch.zeros(3), gen), torch.ones(3, 2))


def test_random_shift_moves_a_pixel_by_at_most_its_allowance():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(200, 1, 8, 8)
    x[:, 0, 4, 4] = 1.0
    pixels = torch.tensor([0, 1, 2] * 66 + [2, 2])
    shifted = random_shift(x, pixels, gen)
    assert torch.equal(shifted.sum((1, 2, 3)), torch.ones(200))
    position = shifted[:, 0].flatten(1).argmax(1)
    rows, cols = position // 8, position % 8
    distance = torch.maximum((rows - 4).abs(), (cols - 4).abs())
    assert torch.all(distance <= pixels)
    assert torch.all(distance[pixels == 0] == 0) and distance[pixels == 2].max() == 2


def test_perturbation_entropy_and_scales_are_finite_and_fixed_mode_has_none():
    hyper = StnHyperparameters(STNConfig(init_scale=0.5, shift=2))
    probs = torch.softmax(hyper.shift_logits.detach(), 0)
    expected = 3 * math.log(0.5) - float((probs * probs.log()).sum())
    assert hyper.entropy().item() == pytest.approx(expected, rel=1e-5)
    values = hyper.values()
    assert values["shift"] == 2 and values["dropout_scale"] == pytest.approx(0.5)
    fixed = StnHyperparameters(STNConfig(), tune=False)
    sample = fixed.sample(16, torch.Generator().manual_seed(0))
    assert torch.allclose(sample.dropout, torch.full((16,), 0.1))
    assert torch.equal(sample.shift, torch.ones(16, dtype=torch.long))
    assert not any(p.requires_grad for p in fixed.parameters())


def test_stn_lowers_a_too_high_dropout_and_beats_the_fixed_run(digits):
    config = STNConfig(epochs=20, dropout=0.9, hidden_sizes=(32,), seed=0)
    stn = train_stn(*digits, num_classes=10, config=config)
    fixed = train_fixed(*digits, num_classes=10, hyperparameters={"dropout": 0.9}, config=config)
    rates = [row["dropout"] for row in stn.schedule]
    assert rates[-1] < 0.3 < 0.85 < rates[0]
    assert stn.history[-1]["val_loss"] < 0.5 * fixed["history"][-1]["val_loss"]
    assert stn.best_val_loss < fixed["best_val_loss"]
    assert stn.history[-1]["val_accuracy"] > 0.88


def test_schedule_has_one_in_range_entry_per_epoch_and_reports_each_epoch(digits):
    reports = []
    config = STNConfig(epochs=4, warmup_epochs=1, shift=0, hyper_lr=0.1, seed=3)
    result = train_stn(*digits, num_classes=10, config=config, report=reports.append)
    assert [row["epoch"] for row in result.schedule] == list(range(4))
    assert len(result.history) == len(reports) == 4
    for row in result.schedule:
        assert 0.0 <= row["dropout"] <= MAX_DROPOUT and 0.0 <= row["noise"] <= 1.0
        assert row["weight_decay"] > 0 and row["shift"] in SHIFTS
        assert sum(row["shift_probs"]) == pytest.approx(1.0)
        scales = [row[f"{k}_scale"] for k in ("dropout", "weight_decay", "noise")]
        assert all(math.isfinite(s) and s > 0 for s in scales + [abs(row["entropy"])])
    assert result.schedule[0]["dropout"] == pytest.approx(config.dropout)
    assert result.schedule[-1]["dropout"] != pytest.approx(config.dropout)
    assert result.schedule[-1]["shift_probs"] != pytest.approx(result.schedule[0]["shift_probs"])
    assert set(reports[-1]) >= {"val_loss", "val_accuracy", "dropout", "shift", "entropy"}


def test_stn_is_deterministic_for_a_seed_and_accepts_tabular_inputs(digits):
    x_tr, y_tr, x_va, y_va = (a[:300] for a in digits)
    config = STNConfig(epochs=2, warmup_epochs=0, hidden_sizes=(8,))
    first = train_stn(x_tr, y_tr, x_va, y_va, num_classes=10, config=config)
    again = train_stn(x_tr, y_tr, x_va, y_va, num_classes=10, config=config)
    other = train_stn(x_tr, y_tr, x_va, y_va, num_classes=10, config=replace(config, seed=1))
    assert first.schedule == again.schedule and first.history == again.history
    assert first.history != other.history
    flat_va = x_va.reshape(len(x_va), -1)
    flat = train_stn(x_tr.reshape(300, -1), y_tr, flat_va, y_va, num_classes=10, config=config)
    assert math.isfinite(flat.best_val_loss)


def test_invalid_settings_are_rejected(digits):
    with pytest.raises(ValueError, match="shift"):
        STNConfig(shift=3)
    with pytest.raises(ValueError, match="dropout"):
        STNConfig(dropout=0.97)
    with pytest.raises(ValueError, match="momentum"):
        train_fixed(*digits, num_classes=10, hyperparameters={"momentum": 0.9})
    with pytest.raises(ValueError, match="network must be one of"):
        STNConfig(network="resnet")
    with pytest.raises(ValueError, match="hue must lie in"):
        STNConfig(hue=0.7)


def _within(value: float, low: float, high: float) -> bool:
    """``value`` is finite and in ``[low, high]`` up to float32 rounding."""
    return math.isfinite(value) and low - 1e-7 <= value <= high * (1 + 1e-6)


def _assert_in_documented_ranges(row: dict) -> None:
    assert _within(row["dropout"], 0.0, MAX_DROPOUT), row
    assert _within(row["weight_decay"], *WEIGHT_DECAY_RANGE), row
    assert _within(row["noise"], 0.0, MAX_NOISE), row
    for name in ("dropout", "weight_decay", "noise"):
        assert _within(row[f"{name}_scale"], *SCALE_RANGE), row
    assert math.isfinite(row["entropy"]) and row["shift"] in SHIFTS


def test_config_rejects_a_negative_tau_and_starts_outside_the_bounds():
    bad = [
        ({"tau": -1e-3}, "tau"),
        ({"tau": math.nan}, "tau"),
        ({"weight_decay": 0.5}, "weight_decay"),
        ({"noise": 0.99}, "noise"),
        ({"init_scale": 3.0}, "init_scale"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            STNConfig(**kwargs)
    assert STNConfig(tau=0.0).tau == 0.0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_samples_stay_finite_and_in_range_however_far_the_parameters_drift(sign):
    hyper = StnHyperparameters(STNConfig())
    with torch.no_grad():
        hyper.mean.fill_(sign * 1e3)
        hyper.log_scale.fill_(100.0)
    sample = hyper.sample(256, torch.Generator().manual_seed(0), temperature=0.5)
    bounds = [(0.0, MAX_DROPOUT), WEIGHT_DECAY_RANGE, (0.0, MAX_NOISE)]
    for values, (low, high) in zip(
        (sample.dropout, sample.weight_decay, sample.noise), bounds, strict=True
    ):
        assert all(_within(v, low, high) for v in values.reshape(-1).tolist())
    assert torch.isfinite(sample.hnet).all() and math.isfinite(hyper.entropy().item())
    hyper.project_()
    _assert_in_documented_ranges(hyper.values())
    assert hyper.log_scale.exp().max().item() == pytest.approx(SCALE_RANGE[1])
    with pytest.raises(ValueError, match="dropout rates"):
        dropout(torch.ones(2, 3), torch.tensor([0.5, math.nan]), torch.Generator())


def test_a_large_entropy_weight_trains_with_bounded_perturbation_scales(digits):
    # tau=0.1 used to grow log_scale without limit until torch.bernoulli got NaN rates.
    config = STNConfig(epochs=8, tau=0.1, hyper_lr=0.1, seed=0)
    result = train_stn(*digits, num_classes=10, config=config)
    for row in result.schedule:
        _assert_in_documented_ranges(row)
    assert all(math.isfinite(row["val_loss"]) for row in result.history)
    assert result.schedule[-1]["noise_scale"] == pytest.approx(SCALE_RANGE[1])
    assert result.history[-1]["val_accuracy"] > 0.8


def test_a_fast_hyper_lr_keeps_every_schedule_value_in_its_documented_range(digits):
    # hyper_lr=0.1 used to push weight decay above 10 and noise to 1.0, collapsing accuracy.
    config = STNConfig(epochs=20, hyper_lr=0.1, seed=0)
    result = train_stn(*digits, num_classes=10, config=config)
    for row in result.schedule:
        _assert_in_documented_ranges(row)
    assert all(math.isfinite(row["val_loss"]) for row in result.history)
    assert min(row["val_accuracy"] for row in result.history[5:]) > 0.8


def test_the_shift_starts_spread_and_moves_after_a_short_warm_up(digits):
    start = StnHyperparameters(STNConfig(shift=1)).values()["shift_probs"]
    assert 1 / len(SHIFTS) < start[1] < 0.6
    config = STNConfig(epochs=15, warmup_epochs=1, shift=1, seed=3)
    result = train_stn(*digits, num_classes=10, config=config)
    assert result.schedule[-1]["shift"] != 1 and max(result.schedule[-1]["shift_probs"]) > 0.5


# --- STN of the pipeline's own models (best-response conv layers, augmentation, replay) ---


def test_a_best_response_conv_is_a_plain_conv_at_fixed_hyperparameters():
    from components.search.stn_model import HyperContext, best_response

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1))
    (conv,), x = best_response(net, 4, torch.Generator().manual_seed(0))[0], torch.randn(5, 2, 6, 6)
    context = conv.context
    assert isinstance(context, HyperContext) and context.hyper is None
    torch.testing.assert_close(conv(x), net[0](x))  # no hyperparameters: the original conv
    hyper = torch.randn(1, 4)
    context.hyper = hyper.expand(5, -1)
    gate = (hyper @ conv.hyper_gate.T).view(-1)  # per output channel
    plain = torch.nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        plain.weight.copy_(net[0].weight + gate.view(-1, 1, 1, 1) * conv.response_weight)
        plain.bias.copy_(net[0].bias + gate * conv.response_bias)
    torch.testing.assert_close(conv(x), plain(x), rtol=1e-5, atol=1e-5)
    context.hyper = -hyper.expand(5, -1)
    assert not torch.allclose(conv(x), plain(x), atol=1e-3)  # it responds to the hyperparameters


def test_augmentation_strengths_act_in_closed_form():
    from components.training.replay import augment, brightness, contrast, hue, saturation

    x = torch.randn(2, 3, 4, 4)
    u = torch.tensor([1.0, -0.5])
    torch.testing.assert_close(
        brightness(x, 0.4, u), x + torch.tensor([0.4, -0.2]).view(2, 1, 1, 1)
    )
    out = contrast(x, 0.5, u)
    mean = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean((1, 2, 3), keepdim=True), mean)
    torch.testing.assert_close(out - mean, (x - mean) * torch.tensor([1.5, 0.75]).view(2, 1, 1, 1))
    grey = x.mean(1, keepdim=True).expand_as(x)
    torch.testing.assert_close(saturation(grey, 0.8, u), grey)  # grey pixels stay grey
    torch.testing.assert_close(saturation(x, 1.0, torch.tensor([-1.0, -1.0])), grey)
    # A third of a turn about the grey axis sends red to green, green to blue, blue to red.
    torch.testing.assert_close(hue(x, 2 / 3, torch.ones(2)), x.roll(1, dims=1), atol=1e-5, rtol=0)
    torch.testing.assert_close(hue(x, 0.3, torch.zeros(2)), x)
    single = torch.randn(2, 1, 4, 4)  # colour augmentations skip greyscale batches
    torch.testing.assert_close(augment(single, {"hue": 0.5, "saturation": 0.9}), single)


def test_the_fit_loop_replays_a_schedule_epoch_by_epoch(digits_dataset):
    from components.training.checkpoint import ModelSpec
    from components.training.config import TrainConfig
    from components.training.fit import fit
    from components.training.worker_data import worker_batches

    schedule = (
        {"epoch": 0, "dropout": 0.5, "weight_decay": 1e-3, "brightness": 0.2, "shift": 1.0},
        {"epoch": 1, "dropout": 0.1, "weight_decay": 1e-5, "brightness": 0.0, "shift": 0.0},
    )
    cfg = TrainConfig(epochs=3, batch_size=256, lr_schedule="none", hyper_schedule=schedule)
    spec = ModelSpec("cnn", (1, 8, 8), 10, tiny=True)
    train, val = worker_batches(digits_dataset, cfg)
    rows = []
    fit(spec.build(), train, val, cfg=cfg, spec=spec, report=lambda m, _: rows.append(m))
    ran = [(r["replayed_dropout"], r["replayed_weight_decay"], r["replayed_shift"]) for r in rows]
    assert ran == [(0.5, 1e-3, 1.0), (0.1, 1e-5, 0.0), (0.1, 1e-5, 0.0)]  # then the last row


def _stn_settings(**overrides) -> dict:
    base = {"epochs": 2, "warmup_epochs": 0, "batch_size": 128, "hyper_lr": 0.05}
    return {**base, **overrides}


def test_an_stn_of_the_cnn_runs_through_the_sweep_and_its_schedule_is_replayed(
    ray_session, digits_dataset, tmp_path
):
    from components.search.best import best_model
    from components.search.sweep_config import SweepConfig
    from components.search.tune_sweep import run_sweep
    from components.training.checkpoint import ModelSpec
    from components.training.config import TrainConfig

    spec = ModelSpec("cnn", (1, 8, 8), 10, tiny=True)
    outcome = run_sweep(
        dataset_path=digits_dataset,
        spec=spec,
        train=TrainConfig(epochs=2),
        space={},
        sweep=SweepConfig(method="stn", num_samples=1),
        storage_path=tmp_path,
        stn=_stn_settings(),
    )
    (schedule,) = outcome.schedules.values()
    assert [row["epoch"] for row in schedule] == [0, 1]
    assert {"dropout", "weight_decay", "brightness", "contrast", "shift"} <= set(schedule[1])
    assert "hue" not in schedule[1]  # greyscale digits: no colour hyperparameters
    assert schedule[1]["brightness"] != pytest.approx(schedule[0]["brightness"])
    _, train = best_model(spec, TrainConfig(epochs=2), "stn", outcome)
    assert [row["weight_decay"] for row in train.hyper_schedule] == pytest.approx(
        [2 * row["weight_decay"] for row in schedule]
    )
    assert [row["brightness"] for row in train.hyper_schedule] == pytest.approx(
        [row["brightness"] for row in schedule]
    )


def test_an_stn_of_protopnet_reads_an_image_folder_through_the_loaders(
    parts_image_dataset, monkeypatch
):
    from types import SimpleNamespace

    from components.search import trials
    from components.search.tune_sweep import check_data
    from components.training.checkpoint import ModelSpec
    from components.training.config import TrainConfig

    check_data("stn", images=True, stn={})
    with pytest.raises(ValueError, match="network=mlp cannot run on an image dataset"):
        check_data("stn", images=True, stn={"network": "mlp"})
    reports = []
    fake = SimpleNamespace(
        report=lambda row, checkpoint=None: reports.append(row),
        Checkpoint=SimpleNamespace(from_directory=lambda folder: folder),
    )
    monkeypatch.setattr(trials, "tune", fake)
    base = {
        "dataset_path": str(parts_image_dataset),
        "spec": ModelSpec("protopnet", (3, 32, 32), 4, tiny=True),
        "train": TrainConfig(decode_workers=0),
        "stn": _stn_settings(epochs=1),
    }
    trials.stn_trial({}, base)
    (row,) = reports
    assert {"hue", "saturation", "brightness", "contrast", "shift", "weight_decay"} <= set(row)
    assert "dropout" not in row  # ProtoPNet has no dropout layer to tune
    assert math.isfinite(row["val_loss"]) and row["epoch"] == 0
