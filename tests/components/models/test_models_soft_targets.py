"""Soft targets: every supervised model's cross-entropy term(s) can train against a per-sample
distribution, its label-indexed terms keep the true label, and a model without CE refuses."""

import pytest
import torch
import torch.nn.functional as F

from components.models import SoftTargetsError, create_model

SHAPE, CLASSES = (3, 8, 8), 4
Y = torch.tensor([0, 1, 2, 3, 1])

# Each supervised model's CE terms and the logits each one is the cross-entropy of.
CE_TERMS = {
    "mlp": {"ce": lambda out: out.logits},
    "cnn": {"ce": lambda out: out.logits},
    "resnet": {"ce": lambda out: out.logits},
    "darts_net": {"ce": lambda out: out.logits},
    "proto_ae": {"ce": lambda out: out.logits},
    "protopnet": {"ce": lambda out: out.logits},
    "st_protopnet": {
        "ce": lambda out: out.logits,
        "ce_trivial": lambda out: out.logits_trivial,
        "ce_support": lambda out: out.logits_support,
    },
    "prob_psenn": {"nll": lambda out: out.sample_logits},  # (N, S, C): every draw
}


def _soft_ce(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``mean over samples (and draws) of sum_c -q_c log softmax(logits)_c``, by hand."""
    if logits.dim() == 3:
        q = q[:, None, :].expand_as(logits)
    return -(q * logits.log_softmax(-1)).sum(-1).mean()


@pytest.mark.parametrize("name", sorted(CE_TERMS))
@torch.no_grad()
def test_ce_terms_follow_soft_targets_and_label_terms_keep_y(name):
    torch.manual_seed(0)
    model = create_model(name, input_shape=SHAPE, num_classes=CLASSES, tiny=True).eval()
    x = torch.randn(len(Y), *SHAPE)
    out = model(x)
    hard = model.loss(out, x, Y)
    q = torch.softmax(torch.randn(len(Y), CLASSES) * 2, dim=1)
    with model.soft_targets(q):
        soft = model.loss(out, x, Y)
    with model.soft_targets(F.one_hot(Y, CLASSES).float()):
        one_hot = model.loss(out, x, Y)
    after = model.loss(out, x, Y)
    for key, logits in CE_TERMS[name].items():
        hard_ce = F.cross_entropy(
            logits(out).flatten(0, -2), Y.repeat_interleave(logits(out)[0, ..., 0].numel())
        )
        torch.testing.assert_close(hard[key], hard_ce, rtol=0, atol=0)  # today's value exactly
        torch.testing.assert_close(soft[key], _soft_ce(logits(out), q))
        torch.testing.assert_close(one_hot[key], hard[key])
        assert not torch.isclose(soft[key], hard[key])
    ce_keys = set(CE_TERMS[name]) | {"total"}
    for key in set(hard) - ce_keys:  # cluster, separation, reconstruction, priors: on y
        torch.testing.assert_close(soft[key], hard[key], rtol=0, atol=0)
    for key in hard:
        torch.testing.assert_close(after[key], hard[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "reason"), [("tell", "unsupervised"), ("cbc", "margin .*not a cross-entropy")]
)
def test_models_without_cross_entropy_refuse_soft_targets(name, reason):
    model = create_model(name, input_shape=SHAPE, num_classes=CLASSES, tiny=True)
    with pytest.raises(SoftTargetsError, match=reason), model.soft_targets(torch.eye(CLASSES)):
        pass


def test_soft_targets_must_fit_the_logits():
    model = create_model("mlp", input_shape=SHAPE, num_classes=CLASSES, tiny=True)
    x = torch.randn(len(Y), *SHAPE)
    wrong_width = torch.full((len(Y), CLASSES + 1), 0.2)
    shape = r"shape \(5, 5\) do not fit .* \(5, 4\)"
    with model.soft_targets(wrong_width), pytest.raises(SoftTargetsError, match=shape):
        model.loss(model(x), x, Y)
    with pytest.raises(SoftTargetsError, match="float"), model.soft_targets(Y):
        pass
