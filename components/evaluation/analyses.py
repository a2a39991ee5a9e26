"""Headline metrics for any model, plus the analyses its paper introduced.

Which analyses run depends on what the model can do, never on its name:

* supervised models get classification metrics, clustering models (``supervised = False``)
  clustering metrics (Hungarian accuracy, NMI, ARI);
* models with ``certified_radius`` (robust CBC) get certified-robustness figures;
* models with ``uncertainty`` (Prob-PSENN) get the uncertainty decomposition, how well it flags
  wrong predictions, and how it reacts to out-of-distribution noise;
* part-prototype models (``activation_maps``) on data with part masks get consistency and
  stability (Huang et al., ICCV 2023), trained against untrained.

:func:`evaluate_stream` computes the headline metrics from a stream of batches (a test split of
images too large to decode at once) and runs the analyses that need the inputs on a sample of
its first rows, which the caller bounds. :mod:`components.evaluation.stage` reads a checkpoint
and its test split and calls these.
"""

from __future__ import annotations

import numpy as np
import torch

from components.evaluation.clustering import clustering_metrics
from components.evaluation.metrics import classification_metrics
from components.evaluation.predict import predict_batches, predict_logits
from components.evaluation.prototype_quality import consistency_score, stability_score
from components.models.base import PrototypeModel

CERTIFIED_EPS = (0.1, 0.25, 0.5, 1.0)


def evaluate_model(
    model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    n_bins: int = 15,
    batch_size: int = 512,
) -> dict:
    """Headline metrics (classification or clustering) and every analysis the model supports."""
    logits = predict_logits(model, x, batch_size=batch_size)
    metrics = outcome_metrics(model, logits, y, num_classes=num_classes, n_bins=n_bins)
    return metrics | input_analyses(model, torch.as_tensor(x), y, logits)


def evaluate_stream(model, batches, *, num_classes: int, sample=None, n_bins: int = 15) -> dict:
    """:func:`evaluate_model` over a stream of batches, holding the logits but never the split.

    Args:
        model: the trained model.
        batches: ``(x, y)`` batches of the split in its order (e.g.
            :func:`components.data.reader.iter_batches`); batches of :func:`evaluate_model`'s
            ``batch_size`` give exactly its metrics.
        num_classes: classes of the dataset.
        sample: ``(x, y)``, the first rows of the same split: the analyses that need the inputs
            (certified radius, uncertainty) run on these, and ``analysis_rows`` records how
            many; ``None``: those analyses do not run.
        n_bins: calibration bins.

    Raises:
        ValueError: ``sample`` is not the first rows of the stream.
    """
    logits, y = predict_batches(model, batches)
    metrics = outcome_metrics(model, logits, y, num_classes=num_classes, n_bins=n_bins)
    if sample is None or not needs_inputs(model):
        return metrics
    x_sample, y_sample = sample
    if not np.array_equal(np.asarray(y_sample), y[: len(y_sample)]):
        raise ValueError("sample: its labels are not those of the first rows of the stream")
    metrics |= input_analyses(model, torch.as_tensor(x_sample), y_sample, logits[: len(y_sample)])
    return metrics | {"analysis_rows": len(y_sample)}


def outcome_metrics(model, logits: torch.Tensor, y, *, num_classes: int, n_bins: int) -> dict:
    """Classification metrics, or clustering metrics for models with ``supervised = False``."""
    if getattr(model, "supervised", True):
        return {"task": "classification", **classification_metrics(logits, y, num_classes, n_bins)}
    return {"task": "clustering", **clustering_metrics(logits, y)}


def needs_inputs(model) -> bool:
    """Whether the model has analyses that need the test inputs, not only its logits."""
    return hasattr(model, "certified_radius") or hasattr(model, "uncertainty")


def input_analyses(model, x: torch.Tensor, y, logits: torch.Tensor) -> dict:
    """The analyses of the model's paper that need the inputs (their logits given)."""
    metrics = {}
    if hasattr(model, "certified_radius"):
        metrics["robustness"] = robustness_summary(model, x, y, logits)
    if hasattr(model, "uncertainty"):
        metrics["uncertainty"] = uncertainty_summary(model, x, y, logits)
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
