"""Checkpoint folders: round trip, and a clear CheckpointError for every kind of bad folder."""

from __future__ import annotations

import json

import pytest
import torch

from components.training.checkpoint import (
    CheckpointError,
    ModelSpec,
    load_model,
    load_state,
    save_checkpoint,
)
from components.training.errors import ModelSpecError
from components.training.ray_trainer import check_resume_checkpoint

SPEC = ModelSpec(name="proto_ae", input_shape=(1, 8, 8), num_classes=10, tiny=True)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = SPEC.build()
    return save_checkpoint(tmp_path / "ckpt", model, SPEC, {"fit_state": {"epoch": 3}}), model


def test_round_trip_restores_weights_and_state(checkpoint):
    folder, model = checkpoint
    loaded, spec = load_model(folder)
    assert spec == SPEC
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert load_state(folder) == {"fit_state": {"epoch": 3}}


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_a_file_inside_the_folder_names_the_folder_to_give(checkpoint):
    folder, _ = checkpoint
    with pytest.raises(CheckpointError, match=f"is a file; name the checkpoint folder .*{folder}"):
        load_model(folder / "model.safetensors")


def test_incomplete_folder_names_the_missing_file(checkpoint):
    folder, _ = checkpoint
    (folder / "state.pt").unlink()
    with pytest.raises(CheckpointError, match="missing state.pt"):
        load_model(folder)


def test_corrupt_weights(checkpoint):
    folder, _ = checkpoint
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_model(folder)


def test_malformed_spec(checkpoint):
    folder, _ = checkpoint
    (folder / "model.json").write_text("{")
    with pytest.raises(CheckpointError, match="model.json is malformed"):
        load_model(folder)


def test_weights_that_do_not_fit_the_model(checkpoint):
    folder, _ = checkpoint
    raw = json.loads((folder / "model.json").read_text())
    raw["num_classes"] = 3
    (folder / "model.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_model(folder)


def test_state_is_never_unpickled_as_code(checkpoint):
    folder, _ = checkpoint

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Payload()}, folder / "state.pt")
    with pytest.raises(CheckpointError, match="cannot read training state"):
        load_state(folder)


def test_resume_checkpoint_for_another_model_is_rejected(checkpoint):
    folder, _ = checkpoint
    other = ModelSpec(name="mlp", input_shape=(1, 8, 8), num_classes=10, tiny=True)
    with pytest.raises(CheckpointError, match="holds model 'proto_ae'"):
        check_resume_checkpoint(folder, other)


def test_resume_checkpoint_is_checked_on_the_driver_down_to_its_weights(checkpoint):
    folder, _ = checkpoint
    check_resume_checkpoint(folder, SPEC)  # a good checkpoint passes
    wider = ModelSpec(**{**SPEC.__dict__, "kwargs": {"num_prototypes": 7}})
    with pytest.raises(CheckpointError, match="do not fit the model"):
        check_resume_checkpoint(folder, wider)  # same model name, other settings
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read weights"):
        check_resume_checkpoint(folder, SPEC)  # truncated: refused before any Ray worker


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelSpec("nope", (1, 8, 8), 10), "unknown model 'nope'"),
        (ModelSpec("mlp", (1, 8, 8), 10, kwargs={"widht": 3}), "unknown keyword argument"),
        (ModelSpec("cnn", (30,), 2), "needs image input"),
        (ModelSpec("protopnet", (30,), 2), r"needs image .*use 'proto_ae' for .*tabular"),
        (ModelSpec("mlp", (1, 8, 8), 10, kwargs={"dropout": 2.0}), "dropout"),
    ],
)
def test_a_model_that_cannot_be_built_names_the_model_and_the_problem(spec, message):
    with pytest.raises(ModelSpecError, match=message) as info:
        spec.build()
    assert repr(spec.name) in str(info.value)
