"""BEYOND's evaluation: attack test inputs, score clean and adversarial ones, measure detection.

Clean inputs are the test inputs the classifier gets right; an attack's adversarial inputs are
those it turned wrong (the reference keeps exactly these two sets). Attacks: untargeted PGD
(:func:`components.evaluation.robustness.pgd_l2`) at the two budgets, and the adaptive attack
(:mod:`components.explain.checks.beyond.attacks`) that also targets the detector.
"""

from __future__ import annotations

import numpy as np
import torch

from components.evaluation.predict import eval_mode, model_logits
from components.evaluation.robustness import pgd_l2
from components.explain.checks.beyond.attacks import adaptive_attack
from components.explain.checks.beyond.detector import (
    NeighbourScores,
    Thresholds,
    detection_auroc,
    fit_thresholds,
    neighbour_scores,
)
from components.explain.checks.beyond.settings import BeyondSettings


def evaluate_detector(
    classifier, ssl, x_test, y_test, x_val, settings: BeyondSettings, seed: int = 0
) -> dict:
    """Detection of PGD (both budgets) and adaptive adversarial inputs by BEYOND.

    Returns:
        ``thresholds`` (the rule's two), ``clean`` (the clean test inputs' scores and the share
        flagged), ``clean_accuracy`` and ``attacks``: one row per attack with ``name``, ``eps``,
        ``success_rate`` (of clean inputs turned wrong), ``auroc`` (the combined score),
        ``auroc_consistency``, ``auroc_similarity``, ``detected`` (share the rule flags) and
        the adversarial inputs' scores.
    """
    x, y = torch.as_tensor(x_test), torch.as_tensor(y_test)
    score = _scorer(classifier, ssl, settings, seed)
    thresholds = fit_thresholds(score(torch.as_tensor(x_val)), settings.clean_fpr)
    correct = _predict(classifier, x) == y
    clean = score(x).subset(correct.numpy())
    attacks = [
        (f"PGD l2 eps={eps:g}", eps, pgd_l2(classifier, x, y, eps, steps=settings.steps, seed=seed))
        for eps in settings.eps
    ]
    adaptive = adaptive_attack(
        classifier,
        ssl,
        x,
        y,
        settings.adaptive_budget,
        settings.views,
        steps=settings.steps,
        neighbours=settings.adaptive_neighbours,
        weight=settings.adaptive_weight,
        seed=seed,
    )
    attacks.append(
        (f"adaptive eps={settings.adaptive_budget:g}", settings.adaptive_budget, adaptive)
    )
    rows = []
    for name, eps, adv in attacks:
        success = correct & (_predict(classifier, adv) != y)
        rows.append(
            _detection(
                name,
                eps,
                score(adv).subset(success.numpy()),
                clean,
                thresholds,
                float(success.sum() / max(int(correct.sum()), 1)),
            )
        )
    return {
        "thresholds": {"consistency": thresholds.consistency, "similarity": thresholds.similarity},
        "clean": {
            **_as_lists(clean),
            "flagged": float(thresholds.flags(clean).mean()) if len(clean.score) else float("nan"),
        },
        "clean_accuracy": float(correct.float().mean()),
        "attacks": rows,
    }


def _scorer(classifier, ssl, settings: BeyondSettings, seed: int):
    def score(x: torch.Tensor) -> NeighbourScores:
        return neighbour_scores(
            classifier,
            ssl,
            x,
            settings.views,
            neighbours=settings.neighbours,
            k=settings.k,
            alpha=settings.alpha,
            seed=seed,
        )

    return score


def _detection(
    name: str,
    eps: float,
    adv: NeighbourScores,
    clean: NeighbourScores,
    thresholds: Thresholds,
    success_rate: float,
) -> dict:
    return {
        "name": name,
        "eps": eps,
        "success_rate": success_rate,
        "adversarial": len(adv.score),
        "auroc": detection_auroc(clean.score, adv.score),
        "auroc_consistency": detection_auroc(clean.consistency, adv.consistency),
        "auroc_similarity": detection_auroc(clean.similarity, adv.similarity),
        "detected": float(thresholds.flags(adv).mean()) if len(adv.score) else float("nan"),
        **_as_lists(adv),
    }


def _as_lists(scores: NeighbourScores) -> dict:
    return {
        "consistency": scores.consistency.tolist(),
        "similarity": scores.similarity.tolist(),
        "score": scores.score.tolist(),
    }


@torch.no_grad()
def _predict(model, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model):
        return model_logits(model(x)).argmax(1)


def summary(evaluation: dict) -> dict:
    """The JSON numbers of ``checks.json``: per attack its success rate, AUROCs and detection."""
    keys = (
        "eps",
        "success_rate",
        "adversarial",
        "auroc",
        "auroc_consistency",
        "auroc_similarity",
        "detected",
    )
    return {
        "clean_accuracy": evaluation["clean_accuracy"],
        "clean_flagged": evaluation["clean"]["flagged"],
        "thresholds": evaluation["thresholds"],
        "attacks": {row["name"]: {k: _json(row[k]) for k in keys} for row in evaluation["attacks"]},
    }


def _json(value):
    return None if isinstance(value, float) and np.isnan(value) else value
