"""ST-ProtoPNet (st_protopnet): two branches, their losses and alternation, push, explanations."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from components.models import PrototypeModel, create_model
from components.models.st_protopnet import (
    STProtoPNetOutput,
    closeness_loss,
    discrimination_loss,
    orthogonality_loss,
)

DIGITS = (1, 8, 8)
BRANCHES = ("trivial", "support")


def build(seed=0, **kwargs):
    torch.manual_seed(seed)
    return create_model("st_protopnet", input_shape=DIGITS, num_classes=3, tiny=True, **kwargs)


@pytest.fixture
def model():
    return build().eval()


# Two classes, two unit prototypes each, in 2-D: class 0 = {e0, e1}, class 1 = {e0, -e1}.
# Cross-class cosines: e0.e0 = 1, e0.-e1 = 0, e1.e0 = 0, e1.-e1 = -1 -> max 1, min -1.
UNIT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]])


def test_discrimination_is_the_mean_largest_cross_class_cosine():
    assert discrimination_loss(UNIT, num_classes=2).item() == pytest.approx(1.0)


def test_closeness_is_minus_the_mean_smallest_cross_class_cosine():
    assert closeness_loss(UNIT, num_classes=2).item() == pytest.approx(1.0)


def test_orthogonality_sums_off_diagonal_gram_entries_per_class():
    assert orthogonality_loss(UNIT, num_classes=2).item() == pytest.approx(0.0)
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # cosines 1 and 0.8
    assert orthogonality_loss(same, num_classes=2).item() == pytest.approx(2 * 1.0 + 2 * 0.8)


def test_cosines_are_computed_in_fp32_under_bf16_autocast(model):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = model.branch_cosine_maps(torch.randn(3, *DIGITS))
    assert all(m.dtype == torch.float32 for m in maps.values())
    assert all(m.abs().max() <= 1 + 1e-6 for m in maps.values())


def test_forward_has_documented_shapes_and_unit_prototypes(model):
    x = torch.randn(5, *DIGITS)
    output = model(x)
    assert isinstance(model, PrototypeModel) and isinstance(output, STProtoPNetOutput)
    assert output.logits.shape == output.logits_trivial.shape == (5, 3)
    assert output.similarities_trivial.shape == output.similarities_support.shape == (5, 6)
    assert model.prototypes.shape == (12, 8)
    assert torch.allclose(model.prototypes.norm(dim=1), torch.ones(12))
    assert model.activation_maps(x).shape == (5, 12, 4, 4)
    assert model.prototype_classes().tolist() == [0, 0, 1, 1, 2, 2] * 2


def test_default_model_keeps_the_paper_prototype_shape():
    model = create_model("st_protopnet", input_shape=DIGITS, num_classes=10)
    assert model.prototype_vectors_trivial.shape == model.prototype_vectors_support.shape
    assert model.prototype_vectors_support.shape == (50, 64)  # 5 per class, D = 64


def test_seeded_builds_are_identical():
    a, b = build(seed=4).eval(), build(seed=4).eval()
    x = torch.randn(3, *DIGITS)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert torch.equal(a(x).logits, b(x).logits)


def test_prediction_is_the_sum_of_both_branches(model):
    output = model(torch.randn(6, *DIGITS))
    assert torch.equal(output.logits, output.logits_trivial + output.logits_support)
    for branch in BRANCHES:
        weight = getattr(model, f"last_layer_{branch}").weight
        sims = getattr(output, f"similarities_{branch}")
        assert torch.allclose(getattr(output, f"logits_{branch}"), sims @ weight.T)
        assert sims.min() >= 0 and sims.max() <= 1  # relu(cos)


def test_last_layers_start_at_plus_one_own_class_minus_half_others(model):
    own = model.prototype_class[None, :] == torch.arange(3)[:, None]
    for branch in BRANCHES:
        layer = getattr(model, f"last_layer_{branch}")
        assert layer.bias is None
        assert torch.equal(layer.weight, torch.where(own, 1.0, -0.5))


def _objectives(terms):
    """The paper's two objectives, written out with the released coefficients."""
    trivial = (
        terms["ce_trivial"]
        - 0.8 * terms["cluster_trivial"]
        + 0.08 * terms["separation_trivial"]
        + 1e-3 * terms["orthogonality_trivial"]
        + 1.0 * terms["discrimination"]
        + 1e-4 * terms["l1_trivial"]
    )
    support = (
        terms["ce_support"]
        - 0.8 * terms["cluster_support"]
        + 0.48 * terms["separation_support"]
        + 1e-3 * terms["orthogonality_support"]
        + 1.0 * terms["closeness"]
        + 1e-4 * terms["l1_support"]
    )
    return trivial.item(), support.item()


def test_loss_terms_and_branch_alternation():
    model = build().train()
    x, y = torch.randn(6, *DIGITS), torch.tensor([0, 1, 2, 0, 1, 2])
    totals = []
    for _ in range(3):
        terms = model.loss(model(x), x, y)
        trivial, support = _objectives(terms)
        totals.append((terms["total"].item(), trivial, support))
    names = {"total", "ce", "discrimination", "closeness"}
    names |= {
        f"{t}_{b}" for t in ("ce", "cluster", "separation", "orthogonality", "l1") for b in BRANCHES
    }
    assert set(terms) == names
    assert totals[0][0] == pytest.approx(totals[0][1], rel=1e-6)  # step 0: trivial
    assert totals[1][0] == pytest.approx(totals[1][2], rel=1e-6)  # step 1: support
    assert totals[2][0] == pytest.approx(totals[2][1], rel=1e-6)  # step 2: trivial again
    assert model.branch_step.item() == 3
    model.eval()
    terms = model.loss(model(x), x, y)
    assert terms["total"].item() == pytest.approx(sum(_objectives(terms)) / 2, rel=1e-6)
    assert model.branch_step.item() == 3  # evaluation does not advance the alternation


def test_cluster_and_separation_are_max_similarities(model):
    x, y = torch.randn(6, *DIGITS), torch.tensor([0, 1, 2, 0, 1, 2])
    output = model(x)
    terms = model.loss(output, x, y)
    own = y[:, None] == model.prototype_class[None, :]
    sims = output.similarities_support
    cluster = torch.stack([sims[i, own[i]].max() for i in range(6)]).mean()
    separation = torch.stack([sims[i, ~own[i]].max() for i in range(6)]).mean()
    assert terms["cluster_support"].item() == pytest.approx(cluster.item())
    assert terms["separation_support"].item() == pytest.approx(separation.item())
    assert terms["l1_trivial"].item() == pytest.approx(0.5 * 2 * 6)


def test_inactive_branch_gets_zero_not_missing_gradients():
    model = build().train()
    x, y = torch.randn(6, *DIGITS), torch.tensor([0, 1, 2, 0, 1, 2])
    model.loss(model(x), x, y)["total"].backward()  # step 0: the trivial branch
    for name in ("add_on_support.0.weight", "prototype_vectors_support"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.equal(grad, torch.zeros_like(grad)), name
    assert model.prototype_vectors_trivial.grad.abs().sum() > 0


def test_without_alternation_total_is_the_mean_of_both_objectives():
    model = build(alternate_branches=False).train()
    x, y = torch.randn(6, *DIGITS), torch.tensor([0, 1, 2, 0, 1, 2])
    terms = model.loss(model(x), x, y)
    assert terms["total"].item() == pytest.approx(sum(_objectives(terms)) / 2, rel=1e-6)


def test_explanation_decomposes_the_summed_logit_over_both_branches(model):
    x = torch.randn(4, *DIGITS)
    logits = model(x).logits
    for row, explanation in enumerate(model.explain(x, top_k=12)):
        assert explanation.class_index == logits[row].argmax().item()
        assert explanation.logit == pytest.approx(logits[row].max().item(), abs=1e-5)
        assert sum(explanation.contributions) == pytest.approx(explanation.logit, abs=1e-5)
        assert explanation.total_contribution == pytest.approx(explanation.logit, abs=1e-5)
        branches = [("trivial" if j < 6 else "support") for j in explanation.prototype_indices]
        assert explanation.extras["branches"] == branches
        for s, d in zip(explanation.similarities, explanation.distances, strict=True):
            assert s == pytest.approx(max(0.0, 1 - d / 2), abs=1e-6)  # d = |u - p|^2 = 2 - 2cos


def _push(model, x, y, batch=5):
    ids = torch.arange(len(x))
    best = None
    for xb, yb, ib in zip(x.split(batch), y.split(batch), ids.split(batch), strict=True):
        found = model.push_candidates(xb, yb, ib)
        best = found if best is None else best.merge(found)
    model.apply_push(best)


def test_push_moves_both_branches_onto_unit_patches_of_their_class(model):
    x, y = torch.randn(15, *DIGITS), torch.arange(3).repeat(5)
    _push(model, x, y)
    assert model.pushed.all()
    classes = model.prototype_classes()
    for j, prototype in enumerate(model.prototypes):
        branch = "trivial" if j < 6 else "support"
        sample, (row, col) = model.push_sample[j].item(), model.push_location[j].tolist()
        assert y[sample] == classes[j]
        patch = model.encode(x[sample : sample + 1])[branch][0, :, row, col]
        assert torch.allclose(prototype, F.normalize(patch, dim=0), atol=1e-6)
        # the prototype is an own-class patch: its best own-class cosine is exactly 1
        maps = model.activation_maps(x[y == classes[j]])[:, j]
        assert maps.max().item() == pytest.approx(1.0, abs=1e-5)


def test_push_provenance_and_alternation_survive_a_safetensors_round_trip(model, tmp_path):
    x, y = torch.randn(9, *DIGITS), torch.arange(3).repeat(3)
    _push(model, x, y)
    model.branch_step += 5
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "m.st")
    fresh = build(seed=1)
    fresh.load_state_dict(load_file(tmp_path / "m.st"), strict=True)
    for name in ("push_sample", "push_location", "pushed", "branch_step"):
        assert torch.equal(getattr(fresh, name), getattr(model, name)), name
    assert torch.equal(fresh.prototypes, model.prototypes)


@pytest.mark.parametrize("epochs", [2, 10])
def test_training_stages_name_prefixes_of_both_branches(model, epochs):
    stages = model.training_stages(epochs)
    names = [name for name, _ in model.named_parameters()]
    assert sum(s.epochs for s in stages) == epochs
    assert [s.push_first for s in stages] == [False, False, True]
    for stage in stages:
        for prefix in stage.trainable:
            matched = {b for b in BRANCHES for n in names if n.startswith(prefix) and b in n}
            assert matched == (set() if prefix == "features" else set(BRANCHES)), prefix


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
    model = create_model("st_protopnet", input_shape=DIGITS, num_classes=2, tiny=True)
    train_model(model, x_train, y_train, epochs=30, lr=1e-2, batch_size=32, lr_schedule="none")
    with torch.no_grad():
        accuracy = (model(x_test).logits.argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.9
    assert model.pushed.all()
    patches = model.encode(x_train[model.push_sample])
    rows, cols = model.push_location.T
    unit = {
        b: F.normalize(patches[b], dim=1)[torch.arange(len(rows)), :, rows, cols] for b in BRANCHES
    }
    p = len(model.prototype_class)  # per branch
    expected = torch.cat([unit["trivial"][:p], unit["support"][p:]])
    assert torch.allclose(expected, model.prototypes, atol=1e-6)


def test_rejects_tabular_input():
    with pytest.raises(ValueError, match="image input"):
        create_model("st_protopnet", input_shape=(6,), num_classes=2)
