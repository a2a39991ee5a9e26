"""ProtoPNet (protopnet): distances, loss, last layer, push, stages, explanations, learning."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from components.models import PrototypeModel, create_model
from components.models.protopnet import (
    ProtoPNetOutput,
    l2_distance_maps,
    log_similarity,
    nearest_patches,
    stage_epochs,
)

DIGITS = (1, 8, 8)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model("protopnet", input_shape=DIGITS, num_classes=3, tiny=True).eval()


def test_distance_maps_match_brute_force_and_are_zero_on_a_patch():
    latent = torch.rand(2, 5, 3, 4)
    prototypes = torch.rand(6, 5)
    prototypes[0] = latent[1, :, 2, 3]
    maps = l2_distance_maps(latent, prototypes)
    brute = (latent[:, None] - prototypes[None, :, :, None, None]).pow(2).sum(dim=2)
    assert maps.shape == (2, 6, 3, 4)
    assert torch.allclose(maps, brute, atol=1e-5)
    assert maps.min() >= 0
    assert maps[1, 0, 2, 3] == pytest.approx(0.0, abs=1e-5)


def test_distances_are_computed_in_fp32_under_bf16_autocast(model):
    x = torch.randn(3, *DIGITS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        latent = model.encode(x)
        maps = l2_distance_maps(latent, model.prototypes)
    assert maps.dtype == torch.float32
    assert torch.allclose(maps, l2_distance_maps(latent.float(), model.prototypes.detach()))


def test_log_similarity_closed_form():
    d = torch.tensor([0.0, 1.0, 3.0])
    expected = torch.log(torch.tensor([1 / 1e-4, 2 / (1 + 1e-4), 4 / (3 + 1e-4)]))
    assert torch.allclose(log_similarity(d), expected)


def test_forward_and_activation_maps_have_documented_shapes(model):
    x = torch.randn(5, *DIGITS)
    output = model(x)
    p, d = model.prototypes.shape
    h, w = model.latent_grid
    assert isinstance(model, PrototypeModel) and isinstance(output, ProtoPNetOutput)
    assert (p, d) == (3 * 2, 8)
    assert output.logits.shape == (5, 3)
    assert output.min_distances.shape == output.similarities.shape == (5, p)
    assert model.encode(x).shape == (5, d, h, w) and (h, w) == (4, 4)
    maps = model.activation_maps(x)
    assert maps.shape == (5, p, h, w)
    assert torch.allclose(maps.flatten(2).amax(2), output.similarities, atol=1e-5)
    assert model.prototype_classes().tolist() == [0, 0, 1, 1, 2, 2]


def test_default_model_keeps_the_paper_prototype_count():
    model = create_model("protopnet", input_shape=DIGITS, num_classes=10)
    assert model.prototypes.shape == (100, 64)  # m_k = 10 prototypes per class


def test_seeded_builds_are_identical():
    def build():
        torch.manual_seed(3)
        return create_model("protopnet", input_shape=DIGITS, num_classes=3, tiny=True).eval()

    a, b = build(), build()
    x = torch.randn(4, *DIGITS)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert torch.equal(a(x).logits, b(x).logits)


def test_last_layer_starts_at_plus_one_own_class_minus_half_others(model):
    weight = model.last_layer.weight
    own = model.prototype_classes()[None, :] == torch.arange(3)[:, None]
    assert model.last_layer.bias is None
    assert torch.equal(weight[own], torch.ones(int(own.sum())))
    assert torch.equal(weight[~own], torch.full((int((~own).sum()),), -0.5))


def test_loss_terms_follow_the_paper(model):
    x, y = torch.randn(6, *DIGITS), torch.tensor([0, 1, 2, 0, 1, 2])
    output = model(x)
    terms = model.loss(output, x, y)
    assert set(terms) == {"total", "ce", "cluster", "separation", "l1"}
    classes = model.prototype_classes()
    cluster = [output.min_distances[i, classes == y[i]].min() for i in range(6)]
    separation = [output.min_distances[i, classes != y[i]].min() for i in range(6)]
    assert terms["cluster"].item() == pytest.approx(torch.stack(cluster).mean().item())
    assert terms["separation"].item() == pytest.approx(torch.stack(separation).mean().item())
    assert terms["l1"].item() == pytest.approx(0.5 * 2 * 6)  # 6 prototypes x 2 other classes
    expected = terms["ce"] + 0.8 * terms["cluster"] - 0.08 * terms["separation"]
    assert terms["total"].item() == pytest.approx((expected + 1e-4 * terms["l1"]).item())


def test_logit_is_the_sum_of_similarity_times_weight(model):
    output = model(torch.randn(7, *DIGITS))
    assert torch.allclose(output.logits, output.similarities @ model.last_layer.weight.T)


def test_explanation_decomposes_the_predicted_logit(model):
    x = torch.randn(4, *DIGITS)
    logits = model(x).logits
    for row, explanation in enumerate(model.explain(x, top_k=6)):
        assert explanation.class_index == logits[row].argmax().item()
        assert explanation.bias == 0.0
        assert sum(explanation.contributions) == pytest.approx(explanation.logit, abs=1e-5)
        assert explanation.total_contribution == pytest.approx(explanation.logit, abs=1e-5)
        magnitudes = [abs(c) for c in explanation.contributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        for s, d in zip(explanation.similarities, explanation.distances, strict=True):
            assert s == pytest.approx(log_similarity(torch.tensor(d)).item(), rel=1e-5)
        idx = explanation.prototype_indices
        assert explanation.extras["prototype_classes"] == model.prototype_classes()[idx].tolist()
        assert all(0 <= r < 4 and 0 <= c < 4 for r, c in explanation.extras["locations"])
    with pytest.raises(ValueError, match="top_k"):
        model.explain(x, top_k=7)


def test_nearest_patches_closed_form():
    # one sample per class, 1x2 grid; prototype 0 is class 0, prototype 1 class 1
    maps = torch.tensor([[[[5.0, 1.0]], [[0.5, 9.0]]], [[[0.1, 4.0]], [[3.0, 2.0]]]])
    latent = torch.arange(2 * 3 * 1 * 2, dtype=torch.float).reshape(2, 3, 1, 2)
    found = nearest_patches(
        maps, latent, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([7, 8])
    )
    # prototype 0 may only use sample 7 (class 0): best (0, 1) at 1.0, not sample 8's 0.1
    assert found.distance.tolist() == [1.0, 2.0]
    assert found.sample.tolist() == [7, 8]
    assert found.location.tolist() == [[0, 1], [0, 1]]
    assert torch.equal(found.vector, torch.stack([latent[0, :, 0, 1], latent[1, :, 0, 1]]))


def _push(model, x, y, batch=7):
    ids = torch.arange(len(x))
    best = None
    for xb, yb, ib in zip(x.split(batch), y.split(batch), ids.split(batch), strict=True):
        found = model.push_candidates(xb, yb, ib)
        best = found if best is None else best.merge(found)
    model.apply_push(best)
    return best


def test_push_moves_every_prototype_onto_a_patch_of_its_class(model):
    x, y = torch.randn(20, *DIGITS), torch.arange(3).repeat(7)[:20]
    best = _push(model, x, y)
    assert model.pushed.all()
    for j, prototype in enumerate(model.prototypes):
        sample, (row, col) = model.push_sample[j].item(), model.push_location[j].tolist()
        assert y[sample] == model.prototype_classes()[j]
        patch = model.encode(x[sample : sample + 1])[0, :, row, col]
        assert torch.allclose(prototype, patch, atol=1e-6)
        own = y == model.prototype_classes()[j]
        brute = l2_distance_maps(model.encode(x[own]), best.vector[j : j + 1]).min()
        assert brute.item() == pytest.approx(0.0, abs=1e-5)


def test_batched_push_finds_the_same_patches_as_one_pass(model):
    x, y = torch.randn(20, *DIGITS), torch.arange(3).repeat(7)[:20]
    whole = model.push_candidates(x, y, torch.arange(20))
    batched = _push(model, x, y)
    assert torch.equal(whole.sample, batched.sample)
    assert torch.equal(whole.location, batched.location)


def test_push_leaves_prototypes_of_absent_classes_alone(model):
    before = model.prototypes.detach().clone()
    x, y = torch.randn(4, *DIGITS), torch.zeros(4, dtype=torch.long)
    _push(model, x, y)
    assert model.pushed.tolist() == [True, True, False, False, False, False]
    assert model.push_sample[2:].tolist() == [-1] * 4
    assert torch.equal(model.prototypes[2:], before[2:])


def test_push_provenance_survives_a_safetensors_round_trip(model, tmp_path):
    x, y = torch.randn(12, *DIGITS), torch.arange(3).repeat(4)
    _push(model, x, y)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.st")
    fresh = create_model("protopnet", input_shape=DIGITS, num_classes=3, tiny=True)
    fresh.load_state_dict(load_file(tmp_path / "m.st"), strict=True)
    for name in ("push_sample", "push_location", "pushed", "active", "prototype_vectors"):
        assert torch.equal(getattr(fresh, name), getattr(model, name)), name


@pytest.mark.parametrize(
    ("epochs", "warm", "cycles"),
    [
        (1, 0, [(1, 0)]),
        (2, 0, [(2, 0)]),
        (3, 1, [(1, 1)]),
        (10, 1, [(7, 2)]),
        (30, 3, [(11, 3), (10, 3)]),
        (60, 6, [(9, 3), (9, 3), (8, 2), (8, 2), (8, 2)]),  # a push every 10 epochs
    ],
)
def test_stage_epochs_split_the_budget_into_push_cycles(epochs, warm, cycles):
    assert stage_epochs(epochs, 0.1, 0.2, push_interval=10) == (warm, cycles)


@pytest.mark.parametrize("epochs", [1, 5, 30, 60])
def test_training_stages_follow_the_paper_schedule(model, epochs):
    stages = model.training_stages(epochs)
    names = [name for name, _ in model.named_parameters()]
    assert sum(s.epochs for s in stages) == epochs
    assert stages[0].name == "warm_up"
    assert [s.name.split("_")[0] for s in stages[1:]] == ["joint", "last"] * (len(stages) // 2)
    assert [s.push_first for s in stages] == [s.name.startswith("last_layer") for s in stages]
    for stage in stages:
        for prefix in stage.trainable:
            assert any(name.startswith(prefix) for name in names), prefix
    assert set(stages[0].trainable) == {"add_on", "prototype_vectors"}  # backbone frozen
    for joint, last in zip(stages[1::2], stages[2::2], strict=True):
        assert set(joint.trainable) == {"features", "add_on", "prototype_vectors"}  # h fixed
        assert last.trainable == {"last_layer": 1.0}


def test_prune_keeps_prototypes_with_enough_own_class_neighbours(model):
    x, y = torch.randn(12, *DIGITS), torch.arange(3).repeat(4)  # 4 images per class
    _push(model, x, y)
    # with k = all 12 images, every prototype has exactly 4 own-class neighbours
    assert model.prune(x, y, k=12, min_own=4).tolist() == []
    assert model.active.all()


def test_pruned_prototypes_no_longer_vote(model):
    x, y = torch.randn(12, *DIGITS), torch.arange(3).repeat(4)
    _push(model, x, y)
    assert model.prune(x, y, k=12, min_own=5).tolist() == list(range(6))
    assert not model.active.any()
    output = model(x)
    assert torch.equal(output.logits, torch.zeros_like(output.logits))
    assert model.loss(output, x, y)["l1"].item() == 0.0
    assert model.explain(x[:1], top_k=6)[0].total_contribution == 0.0


def _parts(n, generator):
    """Class 0 carries a bright 2x2 part, class 1 a dark one, anywhere on a noisy 8x8 image."""
    y = torch.arange(2).repeat(n // 2)
    x = 0.3 * torch.randn(n, *DIGITS, generator=generator)
    corners = torch.randint(0, 7, (n, 2), generator=generator)
    for i, (r, c) in enumerate(corners.tolist()):
        x[i, 0, r : r + 2, c : c + 2] += 2.0 if y[i] == 0 else -2.0
    return x, y


def test_tiny_model_learns_a_part_based_task(train_model):
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = _parts(128, generator)
    x_test, y_test = _parts(128, generator)
    torch.manual_seed(0)
    model = create_model("protopnet", input_shape=DIGITS, num_classes=2, tiny=True)
    train_model(model, x_train, y_train, epochs=30, lr=1e-2, batch_size=32, lr_schedule="none")
    with torch.no_grad():
        accuracy = (model(x_test).logits.argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.9
    # the last stage trained only the last layer: every prototype is still its source patch
    assert model.pushed.all()
    patches = model.encode(x_train[model.push_sample])
    rows, cols = model.push_location.T
    assert torch.allclose(
        patches[torch.arange(len(rows)), :, rows, cols], model.prototypes, atol=1e-6
    )


def test_rejects_tabular_input_and_unknown_options():
    with pytest.raises(ValueError, match="image input"):
        create_model("protopnet", input_shape=(6,), num_classes=2)
    with pytest.raises(TypeError, match="unknown keyword"):
        create_model("protopnet", input_shape=DIGITS, num_classes=2, prototypes=3)
    with pytest.raises(ValueError, match="fraction"):
        create_model("protopnet", input_shape=DIGITS, num_classes=2, warm_up_fraction=0.9)
