"""FedAvg, robust aggregation (median, trimmed mean, Krum), the FedProx proximal term, and
rejection of bad client updates and inflated sample counts."""

from __future__ import annotations

import pytest
import torch

from components.federated.aggregation import (
    aggregate,
    check_sample_claim,
    coordinate_median,
    fedavg,
    fedprox_penalty,
    krum,
    krum_scores,
    trimmed_mean,
    validate_update,
)
from components.federated.experiment import FederatedConfig


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


# -- robust aggregation (Yin et al. 2018; Blanchard et al. 2017) ---------------------------------

HONEST = [torch.tensor([1.0, -2.0]), torch.tensor([2.0, -1.0]), torch.tensor([3.0, 0.0])]
ATTACK = torch.tensor([100.0, -50.0])  # one finite but malicious update


def _states(*ws):
    return [{"w": w, "n": torch.tensor(4)} for w in ws]


def test_median_and_trimmed_mean_by_hand():
    states = _states(*HONEST, ATTACK)
    weights = [1, 1, 1, 10**6]  # inflated claim: irrelevant to the unweighted rules
    # per coordinate, sorted: [1, 2, 3, 100] and [-50, -2, -1, 0]
    median = aggregate(states, weights, "median")
    torch.testing.assert_close(median["w"], torch.tensor([2.5, -1.5]))
    trimmed = aggregate(states, weights, "trimmed_mean", byzantine=1)
    torch.testing.assert_close(trimmed["w"], torch.tensor([2.5, -1.5]))
    five = _states(*HONEST, ATTACK, torch.tensor([-80.0, 9.0]))
    # drops one value at each end: [1, 2, 3] and [-2, -1, 0]
    torch.testing.assert_close(trimmed_mean(five, 1)["w"], torch.tensor([2.0, -1.0]))
    torch.testing.assert_close(trimmed_mean(five, 0)["w"], torch.tensor([5.2, -8.8]))
    assert median["n"].dtype == torch.int64 and median["n"].item() == 4
    # the mean is the attacker's: weighted by its claim it is nearly its update
    assert aggregate(states, weights, "mean")["w"][0] > 99


def test_trimmed_mean_with_too_few_states_is_the_median():
    states = _states(*HONEST)
    torch.testing.assert_close(trimmed_mean(states, 5)["w"], coordinate_median(states)["w"])
    torch.testing.assert_close(coordinate_median(states)["w"], torch.tensor([2.0, -1.0]))


def test_krum_picks_the_update_closest_to_its_neighbours():
    honest = [torch.tensor([1.0, 0.0]), torch.tensor([1.1, 0.1]), torch.tensor([0.9, 0.0])]
    states = _states(*honest, torch.tensor([1.0, 0.2]), ATTACK)
    # n = 5, f = 1: each state scored over its 2 nearest; the attacker is far from all
    scores = krum_scores(states, 1)
    expected = []
    for i, a in enumerate(states):
        d = sorted(float(((a["w"] - b["w"]) ** 2).sum()) for j, b in enumerate(states) if j != i)
        expected.append(sum(d[:2]))
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float64))
    chosen = krum(states, 1)
    assert torch.equal(chosen["w"], states[int(scores.argmin())]["w"])
    # by hand: (1, 0) is 0.01 from (0.9, 0) and 0.02 from (1.1, 0.1): score 0.03, the lowest
    assert int(scores.argmin()) == 0 and torch.equal(chosen["w"], honest[0])
    assert torch.equal(krum(states[:1], 1)["w"], honest[0])


@pytest.mark.parametrize(
    ("method", "byzantine", "match"),
    [
        ("mode", 1, "unknown aggregation 'mode'"),
        ("trimmed_mean", -1, "byzantine"),
        ("krum", -1, "byzantine"),
    ],
)
def test_aggregate_bad_arguments(method, byzantine, match):
    with pytest.raises(ValueError, match=match):
        aggregate(_states(*HONEST), [1, 1, 1], method, byzantine=byzantine)


def test_sample_claims_are_bounded():
    assert check_sample_claim(40, 40) is None and check_sample_claim(40, None) is None
    assert check_sample_claim(41, 40) == "claims 41 samples, more than the 40 this client holds"
    assert check_sample_claim(0, 40) == "claims 0 samples, expected > 0"


def test_federated_config_checks_the_aggregation():
    assert FederatedConfig(aggregation="krum", num_clients=5, byzantine=1).byzantine == 1
    with pytest.raises(ValueError, match=r"aggregation='mode'.*'median'"):
        FederatedConfig(aggregation="mode")
    with pytest.raises(
        ValueError, match="krum with byzantine=1 needs at least 5 clients per round"
    ):
        FederatedConfig(aggregation="krum", num_clients=8, fraction=0.5)
    with pytest.raises(ValueError, match="trimmed_mean with byzantine=2 needs at least 5"):
        FederatedConfig(aggregation="trimmed_mean", num_clients=4, byzantine=2)
    merge = FederatedConfig(aggregation="median").merge()
    torch.testing.assert_close(
        merge(_states(*HONEST, ATTACK), [1] * 4)["w"], torch.tensor([2.5, -1.5])
    )
