"""Final global states are written as .safetensors atomically: a crash mid-write keeps the old
file whole and leaves no temporary file behind."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from components.federated.messages import save_message


def test_save_message_writes_a_safetensors_file(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(7)}
    path = save_message(tmp_path / "fedavg.safetensors", state)
    loaded = load_file(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert os.listdir(tmp_path) == ["fedavg.safetensors"]


def test_a_crash_mid_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "fedavg.safetensors"
    save_message(path, {"w": torch.zeros(3)})
    before = path.read_bytes()

    def crash(fd):  # the process dies after the bytes are written, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        save_message(path, {"w": torch.ones(1000)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["fedavg.safetensors"]
