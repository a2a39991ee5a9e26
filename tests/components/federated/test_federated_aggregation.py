"""FedAvg, the FedProx proximal term, and rejection of bad client updates."""

from __future__ import annotations

import pytest
import torch

from components.federated.aggregation import fedavg, fedprox_penalty, validate_update


def _state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_identical_states_stay_identical():
    state = _state(0)
    merged = fedavg([state, state, state], [1.0, 5.0, 2.0])
    assert merged.keys() == state.keys()
    for key, value in state.items():
        assert merged[key].dtype == value.dtype
        assert torch.equal(merged[key], value), key


def test_weighted_mean_by_hand():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(10)}
    b = {"w": torch.tensor([4.0, -1.0]), "n": torch.tensor(20)}
    merged = fedavg([a, b], [100, 200])
    # (100 * a + 200 * b) / 300
    torch.testing.assert_close(merged["w"], torch.tensor([3.0, 0.0]))
    assert merged["n"].dtype == torch.int64 and merged["n"].item() == 17  # 16.67 rounded


def test_fedavg_model_states_weighted():
    s0, s1 = _state(0), _state(1)
    merged = fedavg([s0, s1], [3, 1])
    torch.testing.assert_close(merged["0.weight"], 0.75 * s0["0.weight"] + 0.25 * s1["0.weight"])


@pytest.mark.parametrize(
    ("states", "weights", "match"),
    [
        ([], [], "at least one"),
        ([{"w": torch.zeros(1)}], [1.0, 2.0], "one weight per state"),
        ([{"w": torch.zeros(1)}, {"w": torch.zeros(1)}], [0.0, 0.0], "weights"),
        ([{"w": torch.zeros(1)}, {"w": torch.zeros(1)}], [-1.0, 2.0], "weights"),
        ([{"w": torch.zeros(1)}, {"v": torch.zeros(1)}], [1.0, 1.0], "differ in keys"),
    ],
)
def test_fedavg_bad_input(states, weights, match):
    with pytest.raises(ValueError, match=match):
        fedavg(states, weights)


def test_fedprox_penalty_value_and_gradient():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 2)
    global_state = {k: v + torch.randn_like(v) for k, v in model.state_dict().items()}
    mu = 0.3
    penalty = fedprox_penalty(model, global_state, mu)
    expected = sum(((p - global_state[n]) ** 2).sum() for n, p in model.named_parameters())
    torch.testing.assert_close(penalty, 0.5 * mu * expected)
    penalty.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, mu * (param.detach() - global_state[name]))


def test_fedprox_penalty_zero_at_global_and_errors():
    model = torch.nn.Linear(3, 1)
    assert fedprox_penalty(model, model.state_dict(), 1.0).item() == 0.0
    with pytest.raises(ValueError, match="mu"):
        fedprox_penalty(model, model.state_dict(), -0.1)
    with pytest.raises(ValueError, match="'bias'"):
        fedprox_penalty(model, {"weight": model.weight.detach()}, 0.1)


REFERENCE = {"layer.weight": torch.zeros(3, 2), "layer.bias": torch.zeros(3)}


def _with(key, value):
    return {**REFERENCE, key: value}


def test_validate_update_accepts_good():
    assert (
        validate_update({k: torch.randn_like(v) for k, v in REFERENCE.items()}, REFERENCE) is None
    )


@pytest.mark.parametrize(
    ("update", "needles"),
    [
        (_with("layer.bias", torch.tensor([0.0, float("nan"), 1.0])), ["'layer.bias'", "NaN"]),
        (
            _with("layer.weight", torch.full((3, 2), float("inf"))),
            ["'layer.weight'", "6 non-finite"],
        ),
        (_with("layer.weight", torch.zeros(2, 3)), ["'layer.weight'", "(2, 3)", "(3, 2)"]),
        ({"layer.weight": torch.zeros(3, 2)}, ["lacks", "layer.bias"]),
        (_with("extra", torch.zeros(1)), ["unexpected", "extra"]),
        (_with("layer.bias", [0.0, 0.0, 0.0]), ["'layer.bias'", "not a tensor"]),
    ],
)
def test_validate_update_rejects(update, needles):
    reason = validate_update(update, REFERENCE)
    assert reason is not None
    for needle in needles:
        assert needle in reason, reason
