"""Robustness: certified accuracy, PGD-l2 against closed-form margins, certificate checks."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from components.evaluation.robustness import certified_accuracy, check_certificates, pgd_l2
from components.models import create_model


class Halfspace(nn.Module):
    """Two-class linear model ``logits = [0, w.x + b]``: the class flips at the hyperplane.

    The smallest l2 perturbation that changes its prediction is ``|w.x + b| / ||w||``;
    ``certified_radius`` claims ``claim`` times that (a true certificate for ``claim <= 1``).
    """

    def __init__(self, claim: float = 1.0) -> None:
        super().__init__()
        self.w, self.b, self.claim = torch.tensor([3.0, -4.0]), torch.tensor(0.5), claim

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.w + self.b).abs() / self.w.norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros(len(x)), x @ self.w + self.b], dim=1)

    def certified_radius(self, x: torch.Tensor) -> torch.Tensor:
        return self.claim * self.distance(x)


POINTS = torch.tensor([[1.0, 1.0], [0.5, -0.2], [-1.0, 0.3], [2.0, 0.0], [0.0, 0.5]])


def test_certified_accuracy_counts_right_and_certified_samples():
    pred, y = [0, 1, 1, 2], [0, 1, 0, 2]
    radius = [0.5, 0.1, 0.9, 0.25]
    assert certified_accuracy(pred, y, radius, 0.25) == 0.5  # samples 0 and 3
    assert certified_accuracy(pred, y, radius, 0.0) == 0.75
    assert math.isnan(certified_accuracy([], [], [], 0.1))
    with pytest.raises(ValueError, match="rows"):
        certified_accuracy(pred, y, radius[:2], 0.1)


def test_pgd_stays_inside_every_per_sample_ball():
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=(2,), num_classes=3, tiny=True)
    x, y = torch.randn(8, 2), torch.randint(0, 3, (8,))
    eps = torch.linspace(0.05, 1.0, 8)
    x_adv = pgd_l2(model, x, y, eps, steps=20)
    assert ((x_adv - x).norm(dim=1) <= eps + 1e-5).all()
    assert ((pgd_l2(model, x, y, 0.3, steps=20) - x).norm(dim=1) <= 0.3 + 1e-5).all()


def test_pgd_flips_exactly_the_points_within_reach_of_the_hyperplane():
    model = Halfspace()
    pred = model(POINTS).argmax(1)
    distance = model.distance(POINTS)
    for factor, should_flip in ((0.95, False), (1.05, True)):
        x_adv = pgd_l2(model, POINTS, pred, factor * distance, steps=30)
        flipped = model(x_adv).argmax(1) != pred
        assert flipped.tolist() == [should_flip] * len(POINTS)


def test_check_certificates_accepts_true_and_catches_false_certificates():
    pred = Halfspace()(POINTS).argmax(1)
    honest = check_certificates(Halfspace(claim=1.0), POINTS, pred, steps=30)
    assert honest["checked"] == len(POINTS) and honest["flipped"] == 0
    assert honest["flipped_beyond"] == len(POINTS)  # the attack has teeth
    assert honest["correct"] == len(POINTS)
    inflated = check_certificates(Halfspace(claim=1.5), POINTS, pred, steps=30)
    assert inflated["flipped"] == len(POINTS)  # 0.99 * 1.5 > 1: every claim is disproved


def _blobs(n_per_class, generator):
    centres = 3.0 * torch.eye(3, 6)
    noise = 0.5 * torch.randn(3 * n_per_class, 6, generator=generator)
    return centres.repeat_interleave(n_per_class, 0) + noise, torch.arange(3).repeat_interleave(
        n_per_class
    )


# robust training makes the certificate nearly tight: PGD flips most predictions at 1.5 radii
@pytest.mark.parametrize(("robust", "beyond"), [(False, 5.0), (True, 1.5)])
def test_trained_tiny_cbc_certificates_survive_pgd(robust, beyond, train_model):
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = _blobs(60, generator)
    x_test, y_test = _blobs(20, generator)
    torch.manual_seed(0)
    model = create_model("cbc", input_shape=(6,), num_classes=3, tiny=True, robust=robust)
    train_model(model, x_train, y_train, epochs=40, lr=0.05, batch_size=32)
    report = check_certificates(model, x_test, y_test, steps=50, beyond=beyond)
    assert report["checked"] == report["correct"] == len(x_test)
    assert report["flipped"] == 0
    assert report["flipped_beyond"] > len(x_test) / 2


@pytest.mark.slow
def test_robust_cbc_on_digits_is_accurate_and_its_certificates_hold(tmp_path, train_model):
    from components.data.ingest import ingest
    from components.data.reader import read_split
    from components.data.spec import DataSpec

    path = ingest(DataSpec(source="digits"), tmp_path).path
    (x_train, y_train), (x_test, y_test) = (
        [torch.from_numpy(a) for a in read_split(path, split)] for split in ("train", "test")
    )
    torch.manual_seed(0)
    model = create_model("cbc", input_shape=(1, 8, 8), num_classes=10, robust=True)
    train_model(model, x_train, y_train, epochs=100, lr=0.05, batch_size=64)
    pred = model(x_test).logits.argmax(1)
    assert (pred == y_test).float().mean().item() >= 0.85  # 0.978 measured
    radius = model.certified_radius(x_test)
    # l2 eps = 0.25 in the standardised input space: 0.944 measured
    assert certified_accuracy(pred, y_test, radius, 0.25) >= 0.85
    report = check_certificates(model, x_test, y_test, steps=100)
    assert report["checked"] > 0.9 * len(x_test) and report["flipped"] == 0
    assert np.isfinite(report["mean_radius"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cbc_certificates_hold_on_cuda_after_bf16_training():
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = (t.cuda() for t in _blobs(60, generator))
    x_test, y_test = (t.cuda() for t in _blobs(20, generator))
    torch.manual_seed(0)
    model = create_model("cbc", input_shape=(6,), num_classes=3, tiny=True, robust=True).cuda()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(model(x_train), x_train, y_train)["total"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    assert model(x_test).probabilities.dtype == torch.float32  # autocast is kept out
    report = check_certificates(model, x_test, y_test, steps=50, beyond=1.5)
    assert report["correct"] == len(x_test) and report["flipped"] == 0
    assert report["flipped_beyond"] > len(x_test) / 2
