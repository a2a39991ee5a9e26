"""BEYOND's neighbourhood scores, its detection rule and the detection AUROC.

He et al., "Be Your Own Neighborhood: Detecting Adversarial Examples by the Neighborhood
Relations Built on Self-Supervised Learning" (ICML 2024); reference code allenhzy/BEYOND
(``detect_cifar10.py``). For an input ``x`` the attacked classifier predicts ``y``; ``x``'s
augmented neighbours ``v_1..v_n`` go through the SSL model. Per neighbour:

* label agreement ``[head(e(v_j)) == y]`` (the reference's cosine between ``onehot(y)`` and the
  head's output on ``v_j``; we take the head's argmax, so the term is the paper's label
  consistency count, 0 or 1 per neighbour);
* representation similarity ``cos(e(x), e(v_j))``.

Label consistency is the share of agreeing neighbours; representation similarity is the
``k``-th largest cosine. The reference's detection statistic is the ``k``-th largest of
``alpha * agreement_j + (1 - alpha) * cos_j`` (``alpha=0.8, k=20`` of ``n=50``): its AUROC,
clean against adversarial, is the headline. The paper's rule flags an input when either label
consistency or representation similarity falls below its threshold; both thresholds are set
on clean validation inputs, at one shared quantile, so that together they flag at most
``clean_fpr`` of them.

Departure: the reference embeds with SimSiam's projector output; ours is the encoder's
(an SSL checkpoint here keeps the encoder only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from components.evaluation.predict import eval_mode, model_logits
from components.ssl.views import augment

QUANTILE_GRID = 201  # candidate shared quantiles in [0, clean_fpr] for the two thresholds


@dataclass
class NeighbourScores:
    """Per input: ``consistency`` (share of neighbours the SSL head labels as the classifier
    labelled the input), ``similarity`` (``k``-th largest representation cosine) and ``score``
    (the reference's combined ``k``-th largest statistic); lower means more suspicious."""

    consistency: np.ndarray
    similarity: np.ndarray
    score: np.ndarray

    def subset(self, keep: np.ndarray) -> NeighbourScores:
        return NeighbourScores(self.consistency[keep], self.similarity[keep], self.score[keep])


@torch.no_grad()
def neighbour_scores(
    classifier, ssl, x: torch.Tensor, views, *, neighbours: int, k: int, alpha: float, seed: int
) -> NeighbourScores:
    """BEYOND's scores of every input of ``x`` from ``neighbours`` augmented views each.

    Args:
        classifier: the attacked model (its predicted label is what neighbours must agree with).
        ssl: :class:`~components.explain.checks.beyond.encoder.SSLModel`.
        x: ``(N, *input_shape)`` inputs.
        views: :class:`~components.ssl.views.ViewConfig` of the neighbours.
        neighbours, k, alpha: see :class:`~components.explain.checks.beyond.settings
            .BeyondSettings`.
        seed: seeds the augmentations (the same draws for clean and adversarial inputs).
    """
    torch.manual_seed(seed)
    with eval_mode(classifier):
        labels = model_logits(classifier(x)).argmax(1)
    rep = ssl.embed(x)
    agree, cosine = [], []
    for _ in range(neighbours):
        view_rep = ssl.embed(augment(x, views))
        agree.append(ssl.head(view_rep).argmax(1) == labels)
        cosine.append(torch.nn.functional.cosine_similarity(rep, view_rep, dim=1))
    agree_all, cos_all = torch.stack(agree, 1).float(), torch.stack(cosine, 1)
    combined = alpha * agree_all + (1 - alpha) * cos_all
    return NeighbourScores(
        consistency=agree_all.mean(1).numpy(),
        similarity=kth_largest(cos_all, k).numpy(),
        score=kth_largest(combined, k).numpy(),
    )


def kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th largest entry of every row (``k=1``: the maximum)."""
    return values.topk(k, dim=1).values[:, -1]


@dataclass(frozen=True)
class Thresholds:
    """The paper's rule: flag when consistency < ``consistency`` or similarity < ``similarity``."""

    consistency: float
    similarity: float

    def flags(self, scores: NeighbourScores) -> np.ndarray:
        return (scores.consistency < self.consistency) | (scores.similarity < self.similarity)


def fit_thresholds(clean: NeighbourScores, clean_fpr: float) -> Thresholds:
    """Both thresholds at the largest shared quantile ``q`` of the clean scores whose union
    flags at most ``clean_fpr`` of ``clean``."""
    best = Thresholds(-np.inf, -np.inf)
    for q in np.linspace(0.0, clean_fpr, QUANTILE_GRID):
        candidate = Thresholds(
            float(np.quantile(clean.consistency, q)), float(np.quantile(clean.similarity, q))
        )
        if candidate.flags(clean).mean() <= clean_fpr:
            best = candidate
    return best


def detection_auroc(clean: np.ndarray, adversarial: np.ndarray) -> float:
    """AUROC of telling adversarial from clean inputs by a low score; nan without both kinds."""
    if not len(clean) or not len(adversarial):
        return float("nan")
    truth = np.r_[np.zeros(len(clean)), np.ones(len(adversarial))]
    return float(roc_auc_score(truth, -np.r_[clean, adversarial]))
