"""SSL checkpoint folders: the encoder round-trips into ``model.params.pretrained`` and the
in-process loader, and a folder that does not fit fails naming what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from components.ssl.checkpoint import SSLCheckpointError, load_encoder
from components.ssl.config import SSLConfig
from components.ssl.learner import pretrain_encoder
from components.training.checkpoint import ModelSpec, load_model, save_checkpoint
from components.training.pretrained import PretrainedError


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    x = torch.randn(128, 12)
    cfg = SSLConfig(objective="jepa", predictor="linear", projector_width=16, epochs=1)
    result = pretrain_encoder("mlp", x, cfg, num_classes=3, tiny=True)
    return result, result.save(tmp_path_factory.mktemp("ssl") / "best")


def test_the_encoder_loads_into_a_fresh_model_and_as_an_embedder(mlp_checkpoint):
    result, folder = mlp_checkpoint
    x = torch.randn(5, 12)
    spec = ModelSpec.configured("mlp", (12,), 3, tiny=True, params={"pretrained": str(folder)})
    assert spec.encoder_from == str(folder) and "pretrained" not in spec.kwargs
    model = spec.build()
    trained = result.model.net
    assert torch.equal(model.net[1].weight, trained[1].weight)  # the hidden layer came over
    assert not torch.equal(model.net[-1].weight, trained[-1].weight)  # the head did not
    assert torch.allclose(load_encoder(folder)(x), result.embedder(x))
    assert json.loads((folder / "ssl.json").read_text())["part"] == "net"


def test_a_model_trained_from_an_encoder_rebuilds_after_its_folder_is_gone(
    mlp_checkpoint, tmp_path
):
    _, folder = mlp_checkpoint
    copy = shutil.copytree(folder, tmp_path / "ssl")
    spec = ModelSpec.configured("mlp", (12,), 3, tiny=True, params={"pretrained": str(copy)})
    model = spec.build()
    saved = save_checkpoint(tmp_path / "checkpoint", model, spec, {})
    shutil.rmtree(copy)
    rebuilt, loaded = load_model(saved)
    assert loaded.encoder_from == str(copy)
    assert torch.equal(rebuilt.net[1].weight, model.net[1].weight)


def test_a_checkpoint_that_does_not_fit_fails_naming_the_mismatch(mlp_checkpoint):
    _, folder = mlp_checkpoint
    wider = ModelSpec("mlp", (12,), 3, encoder_from=str(folder), kwargs={"hidden_sizes": [32]})
    with pytest.raises(
        PretrainedError, match=r"shape mismatches.*net\.1\.weight \(16, 12\) vs \(32, 12\)"
    ):
        wider.build()
    with pytest.raises(PretrainedError, match="holds the 'net' of a mlp model.*'features'"):
        ModelSpec("cnn", (1, 4, 3), 3, tiny=True, encoder_from=str(folder)).build()


def test_an_incomplete_folder_names_the_missing_file(mlp_checkpoint, tmp_path):
    _, folder = mlp_checkpoint
    (tmp_path / "ssl.json").write_text((folder / "ssl.json").read_text())
    with pytest.raises(SSLCheckpointError, match="missing encoder.safetensors, model.json"):
        load_encoder(tmp_path)
