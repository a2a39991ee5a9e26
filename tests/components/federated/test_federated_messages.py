"""Update messages: exact safetensors round trip, no pickle, and prototype updates are small."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.federated.messages import (
    decode,
    encode,
    message_bytes,
    prototype_update,
    read_prototype_update,
)
from components.federated.prototypes import class_sums
from components.training.checkpoint import ModelSpec


def test_round_trip_exact():
    torch.manual_seed(0)
    tensors = {
        "w": torch.randn(4, 3),
        "half": torch.randn(5).half(),
        "n": torch.tensor(7),
        "mask": torch.tensor([True, False]),
        "d": torch.randn(2, dtype=torch.float64),
    }
    back = decode(encode(tensors))
    assert back.keys() == tensors.keys()
    for key, value in tensors.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_round_trip_model_state_with_tied_views():
    state = ModelSpec("mlp", (1, 8, 8), 10).build().state_dict()
    state["tied"] = state["net.1.weight"]  # shares storage: safetensors would refuse it as is
    back = decode(encode(state))
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_bytes_are_not_pickle_and_errors_are_clear():
    data = encode({"w": torch.zeros(2)})
    assert not data.startswith(b"\x80")  # pickle protocol 2+ opcode
    assert message_bytes({"w": torch.zeros(2)}) == len(data)
    with pytest.raises(ValueError, match="not a valid safetensors"):
        decode(b"garbage")
    with pytest.raises(ValueError, match="str -> Tensor"):
        encode({"w": np.zeros(2)})


def test_prototype_update_round_trip():
    rng = np.random.default_rng(0)
    sums, counts = class_sums(rng.normal(size=(30, 64)), rng.integers(0, 10, 30), 10)
    back_sums, back_counts = read_prototype_update(decode(encode(prototype_update(sums, counts))))
    np.testing.assert_allclose(back_sums, sums, rtol=1e-6)  # float32 on the wire
    np.testing.assert_array_equal(back_counts, counts)
    with pytest.raises(ValueError, match="sums"):
        read_prototype_update({"counts": torch.zeros(3)})


def test_prototype_update_at_least_50x_smaller_than_mlp_state():
    update = prototype_update(np.ones((10, 64)), np.ones(10, dtype=np.int64))
    proto = message_bytes(update)
    full = message_bytes(ModelSpec("mlp", (1, 8, 8), 10).build().state_dict())
    ratio = full / proto
    assert ratio >= 50, f"prototype update {proto} B vs mlp state {full} B: ratio {ratio:.1f}x"
    print(f"prototype update {proto} B vs mlp state {full} B: ratio {ratio:.1f}x")
