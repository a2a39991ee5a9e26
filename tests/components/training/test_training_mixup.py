"""MixUp and label smoothing (train.mixup, train.label_smoothing) and array-image augmentation."""

import pytest
import torch
import torch.nn.functional as F

from components.training.batches import ShardBatches
from components.training.config import TrainConfig
from components.training.mixup import BatchMix


def test_mixup_mixes_inputs_and_labels_by_one_lambda():
    # Inputs are one-hot at their own label, so a mixed input must equal its mixed target.
    n = 8
    x, y = torch.eye(n), torch.arange(n)
    torch.manual_seed(3)
    mixed_x, q = BatchMix(num_classes=n, alpha=0.8, smoothing=0.0)(x, y)
    assert torch.allclose(mixed_x, q)
    assert torch.allclose(q.sum(dim=1), torch.ones(n))
    moved = q.diagonal() < 1  # rows mixed with another sample
    lam = q.diagonal()[moved]
    assert moved.any() and torch.allclose(lam, lam[0].expand_as(lam))
    partner = (q - torch.diag(q.diagonal())).argmax(dim=1)[moved]
    assert torch.allclose(q[moved, partner], 1 - lam)


def test_smoothed_mixup_loss_is_the_reference_codes_pair_of_smoothed_losses():
    torch.manual_seed(0)
    logits, x, y = torch.randn(6, 4), torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    torch.manual_seed(5)
    mixed, q = BatchMix(num_classes=4, alpha=0.8, smoothing=0.3)(x, y)
    torch.manual_seed(5)
    lam = float(torch.distributions.Beta(0.8, 0.8).sample())
    perm = torch.randperm(6)
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    reference = lam * F.cross_entropy(logits, y, label_smoothing=0.3) + (1 - lam) * (
        F.cross_entropy(logits, y[perm], label_smoothing=0.3)
    )
    assert torch.allclose(F.cross_entropy(logits, q), reference)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"mixup": -0.1}, "train.mixup"),
        ({"label_smoothing": 1.0}, "train.label_smoothing"),
        ({"mixup": 0.8, "self_distill": "pskd"}, "train.mixup"),
    ],
)
def test_bad_mixup_settings_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        TrainConfig(**overrides)


def test_shard_batches_augment_training_batches_but_not_the_push_order():
    x = torch.arange(12.0).reshape(6, 2)
    batches = ShardBatches(
        x, torch.zeros(6, dtype=torch.long), batch_size=3, shuffle=False, transform=torch.neg
    )
    assert torch.equal(torch.cat([b[0] for b in batches]), -x)
    assert torch.equal(torch.cat([b[0] for b in batches.in_order()]), x)


def test_the_pipeline_refuses_mixup_for_a_model_without_cross_entropy():
    from components.models import create_model
    from flows.config import ConfigError
    from flows.pipeline import check_mixup

    cbc = create_model("cbc", input_shape=(64,), num_classes=10, tiny=True)
    check_mixup(cbc, TrainConfig())  # both off: nothing to refuse
    with pytest.raises(ConfigError, match=r"train\.mixup / train\.label_smoothing: model CBC"):
        check_mixup(cbc, TrainConfig(label_smoothing=0.3))


def test_data_augment_light_crops_and_flips_array_images(digits_dataset):
    from components.training.worker_data import worker_batches

    plain, _ = worker_batches(digits_dataset, TrainConfig(), augment="none")
    light, _ = worker_batches(digits_dataset, TrainConfig(), augment="light")
    torch.manual_seed(0)
    x_plain, x_light = next(iter(plain))[0], next(iter(light))[0]  # same rows, same order
    assert x_light.shape == x_plain.shape == (64, 1, 8, 8)
    assert not torch.equal(x_light, x_plain)
    assert torch.equal(next(light.in_order())[0], next(plain.in_order())[0])
