"""Torchvision trunks under the prototype models and the black-box baseline; 1-D signals."""

import pytest
import torch
import torchvision

from components.models import create_model
from components.models.protopnet import features_lr_scale
from components.models.trunks import TORCHVISION_TRUNKS, TorchvisionTrunk

SMALL_RGB = (3, 64, 64)


@pytest.mark.parametrize("name", TORCHVISION_TRUNKS)
def test_trunk_keys_are_torchvisions_without_the_head(name):
    trunk = TorchvisionTrunk(name)
    classifier = torchvision.models.get_model(name, weights=None)
    expected = {k for k in classifier.state_dict() if not k.startswith(trunk.head_prefixes)}
    assert set(trunk.state_dict()) == expected
    latent = trunk(torch.zeros(1, 3, 224, 224))
    assert latent.shape == (1, trunk.out_channels, 7, 7)  # the papers' 7x7 grid at 224
    assert trunk.grid_size(224, 224) == (7, 7) and trunk.grid_size(64, 64) == (2, 2)


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "densenet121"])
def test_trunk_computes_what_torchvisions_classifier_computes_before_pooling(name):
    torch.manual_seed(0)
    trunk = TorchvisionTrunk(name).eval()
    classifier = torchvision.models.get_model(name, weights=None).eval()
    classifier.load_state_dict(trunk.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        if name.startswith("resnet"):
            c = classifier
            expected = c.layer4(c.layer3(c.layer2(c.layer1(c.maxpool(c.relu(c.bn1(c.conv1(x))))))))
        elif name.startswith("densenet"):
            expected = torch.relu(classifier.features(x))
        else:
            expected = classifier.features(x)
        assert torch.allclose(trunk(x), expected, atol=1e-5)


@pytest.mark.parametrize("model", ["protopnet", "st_protopnet"])
def test_prototype_models_train_a_torchvision_trunk_with_the_papers_rates(model):
    net = create_model(model, input_shape=SMALL_RGB, num_classes=3, backbone="resnet18")
    assert isinstance(net.features, TorchvisionTrunk) and net.features.arch == "resnet18"
    out = net(torch.randn(2, *SMALL_RGB))
    assert out.logits.shape == (2, 3)
    expected_dim = 128 if model == "protopnet" else 64  # ProtoPNet / released ST-ProtoPNet
    assert net.prototypes.shape[1] == expected_dim
    joint = next(s for s in net.training_stages(30) if s.name == "joint")
    assert joint.trainable["features"] == 1.0  # from scratch: the base rate
    pretrained = create_model(
        model, input_shape=SMALL_RGB, num_classes=3, backbone="resnet18", pretrained="w.pth"
    )
    joint = next(s for s in pretrained.training_stages(30) if s.name == "joint")
    assert joint.trainable["features"] == pytest.approx(1e-4 / 3e-3)  # paper: 1e-4 vs 3e-3
    assert features_lr_scale(pretrained.config) == pytest.approx(1 / 30)
    warm_up = pretrained.training_stages(30)[0]
    assert warm_up.name == "warm_up" and "features" not in warm_up.trainable


def test_black_box_baseline_is_trunk_pool_linear():
    torch.manual_seed(0)
    net = create_model("resnet", input_shape=SMALL_RGB, num_classes=5).eval()
    x = torch.randn(3, *SMALL_RGB)
    with torch.no_grad():
        pooled = net.features(x).mean(dim=(2, 3))
        assert torch.allclose(net(x).logits, net.head(pooled), atol=1e-6)
    assert net.head[-1].in_features == 512
    stages = create_model("resnet", input_shape=SMALL_RGB, num_classes=5, pretrained="w.pth")
    assert stages.training_stages(4)[0].trainable == {"features": 0.1, "head": 1.0}


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("protopnet", {"backbone": "resnet9"}, "choose from"),
        ("protopnet", {"pretrained": "w.pth"}, "needs a torchvision backbone"),
        ("protopnet", {"backbone": "resnet18", "input": (1, 8, 8)}, r"RGB images \(3, H, W\)"),
        ("resnet", {"backbone": "conv", "pretrained": "w.pth"}, "needs a torchvision backbone"),
        ("resnet", {"input": (30,)}, "needs image input"),
    ],
)
def test_bad_trunk_settings_are_clear_errors(model, params, message):
    shape = params.pop("input", SMALL_RGB)
    with pytest.raises(ValueError, match=message):
        create_model(model, input_shape=shape, num_classes=3, **params)


SIGNAL = (2, 40)


@pytest.mark.parametrize("name", ["cnn", "protopnet", "st_protopnet", "resnet"])
def test_signals_go_through_1d_convolutions(name):
    net = create_model(name, input_shape=SIGNAL, num_classes=3, tiny=True)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d)]
    assert isinstance(convs[0], torch.nn.Conv1d)  # the trunk convolves along the signal
    assert net(torch.randn(4, *SIGNAL)).logits.shape == (4, 3)


def test_signal_prototypes_are_patches_of_a_1_by_l_grid():
    torch.manual_seed(0)
    net = create_model("protopnet", input_shape=SIGNAL, num_classes=3, tiny=True).eval()
    assert net.latent_grid == (1, 20)  # one pool halves 40 positions
    x, y = torch.randn(6, *SIGNAL), torch.tensor([0, 1, 2, 0, 1, 2])
    assert net.activation_maps(x).shape == (6, net.prototypes.shape[0], 1, 20)
    found = net.push_candidates(x, y, torch.arange(6))
    net.apply_push(found)
    latent = net.encode(x)  # (N, D, 1, l)
    for j in range(net.prototypes.shape[0]):
        sample, (row, col) = int(net.push_sample[j]), net.push_location[j].tolist()
        assert row == 0 and y[sample] == net.prototype_class[j]
        assert torch.allclose(net.prototypes[j], latent[sample, :, row, col], atol=1e-6)
