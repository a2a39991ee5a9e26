"""The adaptive attack on BEYOND: fool the classifier and the detector at once.

As the reference's ``adaptive_attack.py`` (allenhzy/BEYOND): a targeted attack towards
``t = (y + 1) mod C`` (the reference rolls the one-hot labels by one) whose step adds two
separately normalised gradients, one of the classifier's cross-entropy towards ``t`` and one
of the detector's loss: the SSL head's cross-entropy towards ``t`` on fresh augmented
neighbours, minus ``weight`` times the mean cosine between the input's representation and
theirs (the reference's ``alpha=-1``). So the adversarial input's neighbours are pushed to
carry the adversarial label and to stay close in representation, which is what BEYOND checks.

Departures: the reference's l-inf sign steps become l2 steps (each gradient normalised to unit
l2 norm, the pair scaled to the step length and projected on the l2 ball), as
:func:`components.evaluation.robustness.pgd_l2`, the project's non-adaptive attack, measures
budgets in l2; the reference draws 50 neighbours per step, we draw ``neighbours`` (8 by
default) to keep the check's cost bounded.
"""

from __future__ import annotations

import torch
from torch import nn

from components.evaluation.predict import eval_mode, model_logits
from components.evaluation.robustness import project_l2
from components.ssl.views import augment


def adaptive_attack(
    classifier: nn.Module,
    ssl,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    views,
    *,
    steps: int = 50,
    neighbours: int = 8,
    weight: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """Adversarial inputs within l2 distance ``eps`` of ``x`` that target ``(y + 1) mod C``.

    Args:
        classifier: the attacked model.
        ssl: the detector's :class:`~components.explain.checks.beyond.encoder.SSLModel`.
        x, y: ``(N, *input_shape)`` inputs and their true labels.
        eps: l2 budget.
        views: the neighbours' augmentations.
        steps: gradient steps of length ``2.5 * eps / steps``.
        neighbours: augmented neighbours drawn per step.
        weight: weight of the representation-similarity term.
        seed: seeds the augmentations.
    """
    torch.manual_seed(seed)
    inputs = x.detach()
    with eval_mode(classifier), torch.no_grad():
        target = (y + 1) % model_logits(classifier(inputs)).shape[1]
    step = 2.5 * eps / steps
    delta = torch.zeros_like(inputs)
    with eval_mode(classifier):
        for _ in range(steps):
            delta.requires_grad_(True)
            adv = inputs + delta
            attack = nn.functional.cross_entropy(model_logits(classifier(adv)), target)
            detector = _detector_loss(ssl, adv, target, views, neighbours, weight)
            grad_attack = torch.autograd.grad(attack, delta, retain_graph=False)[0]
            grad_detector = torch.autograd.grad(detector, delta)[0]
            with torch.no_grad():
                direction = _unit(grad_attack) + _unit(grad_detector)
                delta = project_l2(delta - step * _unit(direction), eps)
    return (inputs + delta).detach()


def _detector_loss(ssl, adv, target, views, neighbours: int, weight: float) -> torch.Tensor:
    rep = ssl.embed(adv)
    batch = torch.cat([augment(adv, views) for _ in range(neighbours)])
    view_rep = ssl.embed(batch)
    label_loss = nn.functional.cross_entropy(ssl.head(view_rep), target.repeat(neighbours))
    cosine = nn.functional.cosine_similarity(rep.repeat(neighbours, 1), view_rep, dim=1)
    return label_loss - weight * cosine.mean()


def _unit(grad: torch.Tensor) -> torch.Tensor:
    """Every row of ``grad`` scaled to unit l2 norm."""
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return grad / norms.view(-1, *[1] * (grad.dim() - 1))
