"""Prototype explanations ("this looks like that"): the gallery and per-sample decompositions.

These read what a :class:`~components.models.base.PrototypeModel` computes itself, so the
explanations are faithful by construction; ``decomposition_error`` checks that they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from components.evaluation.arrays import as_labels
from components.evaluation.predict import eval_mode
from components.models.base import PrototypeExplanation, PrototypeModel
from components.tensors import as_float_tensor


def _require_prototype_model(model: Any, needs: str) -> PrototypeModel:
    if not isinstance(model, PrototypeModel):
        raise TypeError(
            f"{needs} needs a PrototypeModel, got {type(model).__name__}; use "
            "integrated_gradients for other models"
        )
    return model


def prototype_classes(model: PrototypeModel) -> list[int | None]:
    """The class each prototype stands for, or None per prototype if the model has no such map."""
    if hasattr(model, "prototype_classes"):
        return [int(c) for c in model.prototype_classes().detach().cpu().tolist()]
    return [None] * int(model.prototypes.shape[0])


def prototype_gallery(model: Any) -> dict:
    """Decoded prototypes and their classes.

    Args:
        model: a :class:`PrototypeModel` with ``decode_prototypes()``.

    Returns:
        ``{"images": (m, *input_shape) float32 array, "classes": list of m ints}``; images are
        in the model's (standardised) input space, like the explained inputs: the report draws
        both de-normalised (:class:`components.report.display.InputScale`).

    Raises:
        TypeError: if the model is not a prototype model or cannot decode its prototypes.
    """
    model = _require_prototype_model(model, "prototype_gallery")
    if not hasattr(model, "decode_prototypes"):
        raise TypeError(f"{type(model).__name__} has no decode_prototypes(); no gallery to show")
    with eval_mode(model), torch.no_grad():
        images = model.decode_prototypes().detach().float().cpu().numpy()
    return {"images": images, "classes": prototype_classes(model)}


def _name(class_names: Sequence[str] | None, index: int | None) -> str | None:
    if class_names is None or index is None:
        return None
    return str(class_names[index]) if 0 <= index < len(class_names) else str(index)


def _sample_dict(
    explanation: PrototypeExplanation,
    logit: float,
    *,
    index: int,
    true: int,
    classes: list[int | None],
    class_names: Sequence[str] | None,
) -> dict:
    prototypes = [
        {
            "index": int(j),
            "class": classes[j],
            "distance": float(distance),
            "similarity": float(similarity),
            "contribution": float(contribution),
        }
        for j, distance, similarity, contribution in zip(
            explanation.prototype_indices,
            explanation.distances,
            explanation.similarities,
            explanation.contributions,
            strict=True,
        )
    ]
    sample = {
        "index": int(index),
        "true": int(true),
        "predicted": int(explanation.class_index),
        "logit": float(logit),
        "bias": float(explanation.bias),
        "prototypes": prototypes,
        "total_contribution": float(explanation.total_contribution),
        "decomposition_error": abs(explanation.total_contribution + explanation.bias - logit),
    }
    if class_names is not None:
        sample["true_name"] = _name(class_names, sample["true"])
        sample["predicted_name"] = _name(class_names, sample["predicted"])
    return sample


def explain_samples(
    model: Any,
    x: Any,
    y: Any,
    *,
    top_k: int = 3,
    class_names: Sequence[str] | None = None,
    indices: Sequence[int] | None = None,
) -> list[dict]:
    """Per-sample prototype explanations of the predicted class, JSON-serialisable.

    ``logit`` is taken from an independent forward pass (``explained_logits``: the plain forward,
    or the mean-prototype one for a sampling model), so ``decomposition_error =
    |total_contribution + bias - logit|`` measures how faithful the model's ``explain`` is.

    Args:
        model: a :class:`PrototypeModel`.
        x: inputs ``(N, *input_shape)``.
        y: ``(N,)`` true labels.
        top_k: prototypes listed per sample, largest absolute contribution first (capped at
            the number of prototypes).
        class_names: optional names; adds ``true_name`` and ``predicted_name``.
        indices: the samples' indices in the source dataset (default ``0..N-1``).

    Returns:
        One dict per sample: ``index``, ``true``, ``predicted``, ``logit``, ``bias``,
        ``prototypes`` (``index``, ``class``, ``distance``, ``similarity``, ``contribution``),
        ``total_contribution``, ``decomposition_error``.
    """
    model = _require_prototype_model(model, "explain_samples")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    inputs = as_float_tensor(x)
    labels = as_labels(y, "y")
    indices = list(range(len(inputs))) if indices is None else [int(i) for i in indices]
    if not len(labels) == len(indices) == len(inputs):
        raise ValueError(
            f"x has {len(inputs)} rows, y {len(labels)} and indices {len(indices)}; they must match"
        )
    top_k = min(top_k, int(model.prototypes.shape[0]))
    with eval_mode(model), torch.no_grad():
        logits = model.explained_logits(inputs).double().cpu()
        explanations = model.explain(inputs, top_k=top_k)
    classes = prototype_classes(model)
    return [
        _sample_dict(
            explanation,
            float(logits[i, explanation.class_index]),
            index=indices[i],
            true=int(labels[i]),
            classes=classes,
            class_names=class_names,
        )
        for i, explanation in enumerate(explanations)
    ]
