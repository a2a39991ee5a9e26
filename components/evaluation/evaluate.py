"""The evaluate stage: headline metrics for any model, plus the analyses its paper introduced.

Which analyses run depends on what the model can do, never on its name:

* supervised models get classification metrics, clustering models (``supervised = False``)
  clustering metrics (Hungarian accuracy, NMI, ARI);
* models with ``certified_radius`` (robust CBC) get certified-robustness figures;
* models with ``uncertainty`` (Prob-PSENN) get the uncertainty decomposition, how well it flags
  wrong predictions, and how it reacts to out-of-distribution noise;
* part-prototype models (``activation_maps``) on data with part masks get consistency and
  stability (Huang et al., ICCV 2023), trained against untrained.
"""

from __future__ import annotations

import numpy as np
import torch

from components.evaluation.clustering import clustering_metrics
from components.evaluation.metrics import classification_metrics
from components.evaluation.predict import predict_logits
from components.evaluation.prototype_quality import consistency_score, stability_score
from components.models.base import PrototypeModel

CERTIFIED_EPS = (0.1, 0.25, 0.5, 1.0)


def evaluate_model(model, x: np.ndarray, y: np.ndarray, *, num_classes: int, n_bins: int = 15):
    """Headline metrics (classification or clustering) and every analysis the model supports."""
    logits = predict_logits(model, x)
    if getattr(model, "supervised", True):
        metrics = {
            "task": "classification",
            **classification_metrics(logits, y, num_classes, n_bins),
        }
    else:
        metrics = {"task": "clustering", **clustering_metrics(logits, y)}
    inputs = torch.as_tensor(x)
    if hasattr(model, "certified_radius"):
        metrics["robustness"] = robustness_summary(model, inputs, y, logits)
    if hasattr(model, "uncertainty"):
        metrics["uncertainty"] = uncertainty_summary(model, inputs, y, logits)
    return metrics


@torch.no_grad()
def robustness_summary(model, x: torch.Tensor, y: np.ndarray, logits: torch.Tensor) -> dict:
    """Certified l2 radius per test prediction and certified accuracy at several epsilons."""
    radius = _batched(model.certified_radius, x).numpy()
    correct = logits.argmax(1).numpy() == np.asarray(y)
    return {
        "radius": radius.tolist(),
        "correct": correct.tolist(),
        "mean_radius_correct": float(radius[correct].mean()) if correct.any() else 0.0,
        "certified_accuracy": {
            str(eps): float((correct & (radius > eps)).mean()) for eps in CERTIFIED_EPS
        },
    }


@torch.no_grad()
def uncertainty_summary(model, x: torch.Tensor, y: np.ndarray, logits: torch.Tensor, seed: int = 0):
    """Total/aleatoric/epistemic uncertainty, its AUROC for wrong predictions, and OOD noise."""
    from sklearn.metrics import roc_auc_score

    parts = _batched_dict(model.uncertainty, x)
    wrong = logits.argmax(1).numpy() != np.asarray(y)
    total = parts["total"]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    ood_total = _batched_dict(model.uncertainty, noise)["total"]
    both = np.concatenate([np.zeros(len(total)), np.ones(len(ood_total))])
    summary = {name: values.tolist() for name, values in parts.items()}
    summary.update(
        wrong=wrong.tolist(),
        auroc_wrong=float(roc_auc_score(wrong, total)) if 0 < wrong.sum() < len(wrong) else None,
        mean_total_right=float(total[~wrong].mean()) if (~wrong).any() else None,
        mean_total_wrong=float(total[wrong].mean()) if wrong.any() else None,
        mean_total_ood_noise=float(ood_total.mean()),
        auroc_ood_noise=float(roc_auc_score(both, np.concatenate([total, ood_total]))),
    )
    return summary


def has_activation_maps(model) -> bool:
    """Whether the model has spatial (part) prototypes with similarity maps."""
    return (
        isinstance(model, PrototypeModel)
        and type(model).activation_maps is not PrototypeModel.activation_maps
    )


def prototype_quality(model, untrained, x, masks, y, part_names, seed: int = 0) -> dict:
    """Consistency and stability of the trained prototypes and of the same network untrained."""
    out = {}
    for name, net in (("trained", model), ("untrained", untrained)):
        consistency = consistency_score(net, x, masks, y, part_names=part_names)
        stability = stability_score(net, x, masks, seed=seed, y=y)
        out[name] = {"consistency": consistency["score"], "stability": stability["score"]}
        if name == "trained":
            out["per_prototype"] = consistency["prototypes"]
    return out


def _batched(fn, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat(
        [fn(x[i : i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)]
    )


def _batched_dict(fn, x: torch.Tensor, batch_size: int = 512) -> dict[str, np.ndarray]:
    chunks = [fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return {k: torch.cat([c[k].float().cpu() for c in chunks]).numpy() for k in chunks[0]}
