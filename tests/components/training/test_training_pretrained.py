"""Pretrained trunk weights from files the user names (offline first), and frozen BatchNorm."""

import os
import time

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from components.models.base import TrainingStage
from components.training.checkpoint import ModelSpec, load_model, save_checkpoint
from components.training.config import TrainConfig
from components.training.optim import build_optimizer
from components.training.pretrained import PretrainedError, load_pretrained
from components.training.steps import train_epoch

SHAPE = (3, 32, 32)


def _classifier_file(tmp_path, arch="resnet18", suffix=".pth", seed=0):
    """A randomly initialised torchvision classifier saved as users download them."""
    torch.manual_seed(seed)
    state = torchvision.models.get_model(arch, weights=None).state_dict()
    path = tmp_path / f"{arch}{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path, state


def _spec(pretrained, model="protopnet", backbone="resnet18"):
    kwargs = {"backbone": backbone, "pretrained": str(pretrained)}
    return ModelSpec(model, SHAPE, 3, tiny=True, kwargs=kwargs)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("model", ["protopnet", "st_protopnet", "resnet"])
def test_saved_trunk_loads_exactly_and_the_head_is_set_aside(tmp_path, suffix, model):
    path, state = _classifier_file(tmp_path, suffix=suffix)
    net = _spec(path, model).build()
    trunk = net.features.state_dict()
    assert set(trunk) == {k for k in state if not k.startswith("fc.")}
    for key, value in trunk.items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize(
    "wrap",
    [
        lambda state: {f"module.{k}": v for k, v in state.items()},  # DDP
        # a Lightning checkpoint: the module's attribute, inside "state_dict", beside the epoch
        lambda state: {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 9},
        lambda state: {f"module.backbone.{k}": v for k, v in state.items()},  # an SSL library's
    ],
)
def test_wrapped_keys_load(tmp_path, wrap):
    _, state = _classifier_file(tmp_path)
    path = tmp_path / "wrapped.pth"
    torch.save(wrap(state), path)
    net = _spec(path).build()
    for key, value in net.features.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_prefix_is_kept_when_dropping_it_fits_no_better(tmp_path):
    # a VGG file of its feature layers only: "features." is the trunk's own, not a wrapper
    _, state = _classifier_file(tmp_path, arch="vgg11")
    path = tmp_path / "vgg_features.pth"
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, path)
    net = _spec(path, backbone="vgg11").build()
    assert torch.equal(net.features.features[0].weight, state["features.0.weight"])


def test_wrong_architecture_names_the_first_mismatched_keys(tmp_path):
    path, _ = _classifier_file(tmp_path, arch="resnet34")
    with pytest.raises(PretrainedError, match="does not fit a resnet18 trunk") as info:
        _spec(path).build()
    assert "unexpected keys" in str(info.value) and "layer1.2.conv1.weight" in str(info.value)
    path, _ = _classifier_file(tmp_path, arch="resnet50")
    with pytest.raises(PretrainedError, match=r"shape mismatches .*layer1\.0\.conv1\.weight"):
        _spec(path).build()


def test_missing_corrupt_and_pickled_files_are_refused(tmp_path):
    with pytest.raises(PretrainedError, match="no weights file at"):
        _spec(tmp_path / "nope.pth").build()
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a zip archive")
    with pytest.raises(PretrainedError, match="cannot read weights file") as refused:
        _spec(corrupt).build()
    assert "not a file torch.save wrote" in str(refused.value)
    pickled = tmp_path / "code.pth"
    torch.save({"conv1.weight": torch.zeros(1), "hook": os.getcwd}, pickled)  # a function
    with pytest.raises(PretrainedError, match="cannot read weights file") as refused:
        _spec(pickled).build()  # weights_only=True refuses to unpickle code
    assert f"it holds code ({os.getcwd.__module__}.getcwd)" in str(refused.value)
    # one line, and not torch's advice to load it with weights_only=False
    assert "\n" not in str(refused.value) and "weights_only" not in str(refused.value)
    truncated = tmp_path / "truncated.pth"
    torch.save({"conv1.weight": torch.zeros(64)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(PretrainedError, match="failed reading zip archive") as refused:
        _spec(truncated).build()
    assert "\n" not in str(refused.value)


def test_a_weights_name_loads_from_torchvisions_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    _, state = _classifier_file(tmp_path)
    torch.save(state, cache / os.path.basename(weights.url))
    net = _spec("IMAGENET1K_V1").build()
    assert torch.equal(net.features.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_a_weights_name_without_network_fails_at_once_saying_how_to_pass_a_file(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens: the download fails
    start = time.perf_counter()
    with pytest.raises(PretrainedError, match="cannot download") as info:
        _spec("IMAGENET1K_V1").build()
    assert time.perf_counter() - start < 30
    assert "curl -LO https://download.pytorch.org/models/resnet18" in str(info.value)
    assert "+model.params.pretrained=/path/to/resnet18-" in str(info.value)


def test_an_unknown_weights_name_lists_the_known_ones():
    with pytest.raises(PretrainedError, match="IMAGENET1K_V1"):
        _spec("IMAGENET9K").build()


def test_a_model_without_a_torchvision_trunk_says_so():
    net = ModelSpec("mlp", (5,), 2).build()
    with pytest.raises(PretrainedError, match="no torchvision trunk"):
        load_pretrained(net, "w.pth")


def test_a_checkpoint_loads_without_the_pretrained_file(tmp_path):
    path, _ = _classifier_file(tmp_path)
    spec = _spec(path, "resnet")
    net = spec.build()
    folder = save_checkpoint(tmp_path / "ckpt", net, spec, {})
    path.unlink()  # the weights file is gone; the checkpoint holds every weight
    loaded, _ = load_model(folder)
    assert torch.equal(loaded.features.conv1.weight, net.features.conv1.weight)


def test_a_stage_that_freezes_the_trunk_keeps_its_batchnorm_statistics():
    torch.manual_seed(0)
    net = ModelSpec("resnet", SHAPE, 3, kwargs={"backbone": "resnet18"}).build()
    batches = [(torch.randn(8, *SHAPE) * 3 + 1, torch.randint(0, 3, (8,)))]
    cfg = TrainConfig(lr=1e-3)
    before = net.features.bn1.running_mean.clone()
    head_only = build_optimizer(net, cfg, TrainingStage("head", 1, {"head": 1.0}))
    train_epoch(net, batches, head_only, cfg, torch.device("cpu"))
    assert torch.equal(net.features.bn1.running_mean, before)
    assert not net.features.bn1.training
    train_epoch(net, batches, build_optimizer(net, cfg), cfg, torch.device("cpu"))
    assert not torch.allclose(net.features.bn1.running_mean, before)
