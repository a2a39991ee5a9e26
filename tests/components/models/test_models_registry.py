"""Registry contract for every registered model: shapes, tiny variants, determinism, errors."""

import pytest
import torch

from components.models import ModelOutput, create_model, list_models
from components.models.bossnas_net import TINY_ARCHITECTURE
from components.models.darts_net import TINY_GENOTYPE

IMAGE = (1, 8, 8)
ODD_IMAGE = (3, 7, 5)
TABULAR = (13,)
IMAGE_ONLY = {
    "bossnas_net",
    "cct",
    "cnn",
    "darts_net",
    "protopnet",
    "st_protopnet",
    "resnet",
    "skan_conv",
}
# Full-size variants on a torchvision ImageNet trunk: RGB images only.
RGB_ONLY = {"resnet"}
# Keyword arguments a full-size model cannot be built without (tiny variants carry their own).
REQUIRED = {
    "darts_net": {"genotype": TINY_GENOTYPE},
    "bossnas_net": {"architecture": TINY_ARCHITECTURE},
}


def _required(name, tiny):
    return {} if tiny else REQUIRED.get(name, {})


def _cases():
    for name in list_models():
        for shape in (IMAGE, ODD_IMAGE, TABULAR):
            if name in IMAGE_ONLY and len(shape) == 1:
                continue
            for tiny in (True, False):
                yield pytest.param(name, shape, tiny, id=f"{name}-{shape}-tiny{tiny}")


def test_registry_holds_the_first_models():
    assert {"mlp", "cnn", "proto_ae"} <= set(list_models())


@pytest.mark.parametrize(("name", "shape", "tiny"), list(_cases()))
def test_forward_returns_logits_of_batch_by_classes(name, shape, tiny):
    if name in RGB_ONLY and not tiny and shape[0] != 3:
        with pytest.raises(ValueError, match=r"RGB images \(3, H, W\)"):
            create_model(name, input_shape=shape, num_classes=4)
        return
    model = create_model(name, input_shape=shape, num_classes=4, tiny=tiny, **_required(name, tiny))
    output = model(torch.randn(5, *shape))
    assert isinstance(output, ModelOutput)
    assert output.logits.shape == (5, 4)
    assert torch.isfinite(output.logits).all()
    terms = model.loss(output, torch.randn(5, *shape), torch.tensor([0, 1, 2, 3, 0]))
    assert terms["total"].ndim == 0 and torch.isfinite(terms["total"])


@pytest.mark.parametrize("name", list_models())
def test_tiny_variant_is_smaller(name):
    shape = (3, *IMAGE[1:]) if name in RGB_ONLY else IMAGE

    def size(tiny):
        model = create_model(
            name, input_shape=shape, num_classes=10, tiny=tiny, **_required(name, tiny)
        )
        return sum(p.numel() for p in model.parameters())

    assert size(True) * 5 < size(False)


@pytest.mark.parametrize("name", list_models())
def test_same_seed_builds_identical_model_and_outputs(name):
    x = torch.randn(6, *IMAGE)

    def build():
        torch.manual_seed(123)
        model = create_model(name, input_shape=IMAGE, num_classes=3, tiny=True).eval()
        return model, model(x).logits

    (first, logits_1), (second, logits_2) = build(), build()
    for p1, p2 in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(p1, p2)
    assert torch.equal(logits_1, logits_2)
    torch.manual_seed(124)
    other = create_model(name, input_shape=IMAGE, num_classes=3, tiny=True).eval()
    assert not torch.equal(other(x).logits, logits_1)


def test_unknown_model_name_lists_registered_names():
    with pytest.raises(KeyError, match="registered models: " + ", ".join(list_models())):
        create_model("resnet9000", input_shape=IMAGE, num_classes=10)


@pytest.mark.parametrize("name", list_models())
def test_unknown_kwarg_is_named_in_the_error(name):
    with pytest.raises(TypeError, match=rf"{name}.*'hiden_size'"):
        create_model(name, input_shape=IMAGE, num_classes=10, hiden_size=3)


def test_kwargs_override_config_fields_and_lists_become_tuples():
    model = create_model("mlp", input_shape=TABULAR, num_classes=2, hidden_sizes=[7, 5])
    assert model.config.hidden_sizes == (7, 5)
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [7, 5, 2]


def test_invalid_hyperparameter_value_is_rejected():
    with pytest.raises(ValueError, match="dropout"):
        create_model("mlp", input_shape=TABULAR, num_classes=2, dropout=1.5)


def test_cnn_rejects_tabular_input_with_a_pointer_to_mlp():
    with pytest.raises(ValueError, match=r"\(C, H, W\).*'mlp'"):
        create_model("cnn", input_shape=TABULAR, num_classes=2)


@pytest.mark.parametrize("name", list_models())
def test_wrong_batch_shape_names_expected_and_actual_shapes(name):
    model = create_model(name, input_shape=IMAGE, num_classes=2, tiny=True)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\).*\(4, 64\)"):
        model(torch.randn(4, 64))


@pytest.mark.parametrize(("shape", "classes"), [((0, 8, 8), 10), (IMAGE, 1)])
def test_bad_build_arguments_are_rejected(shape, classes):
    with pytest.raises(ValueError, match="input_shape|num_classes"):
        create_model("mlp", input_shape=shape, num_classes=classes)
