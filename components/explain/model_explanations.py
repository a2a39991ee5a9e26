"""One call that explains a trained model on a few test samples, for reports and artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from components.evaluation.analyses import has_activation_maps
from components.evaluation.arrays import as_labels
from components.evaluation.predict import eval_mode, predict_logits
from components.explain.integrated_gradients import integrated_gradients
from components.explain.prototypes import explain_samples, prototype_gallery
from components.explain.push_gallery import add_sample_regions, is_pushed, pushed_gallery
from components.models.base import PrototypeModel
from components.tensors import as_float_tensor


def select_samples(y: Any, num_samples: int, seed: int = 0) -> np.ndarray:
    """Indices of ``num_samples`` samples spread over the classes, reproducibly.

    Classes are visited in a seeded random order, one random sample per class per round, so the
    first ``min(num_samples, num_classes)`` picks all have different true classes.

    Args:
        y: ``(N,)`` labels.
        num_samples: how many to pick (all of them if ``N`` is smaller).
        seed: seed of the random choice.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    labels = as_labels(y, "y")
    rng = np.random.default_rng(seed)
    pools = [
        rng.permutation(np.flatnonzero(labels == c)) for c in rng.permutation(np.unique(labels))
    ]
    longest = max((len(pool) for pool in pools), default=0)
    picks = [pool[r] for r in range(longest) for pool in pools if r < len(pool)]
    return np.asarray(picks[:num_samples], dtype=np.int64)


def _basic_samples(
    logits: torch.Tensor, labels: np.ndarray, indices: np.ndarray, class_names: Sequence[str] | None
) -> list[dict]:
    """Prediction summary per sample for models without prototypes."""
    samples = []
    for row, index in enumerate(indices):
        predicted = int(logits[row].argmax())
        sample = {
            "index": int(index),
            "true": int(labels[row]),
            "predicted": predicted,
            "logit": float(logits[row, predicted]),
        }
        if class_names is not None:
            sample["true_name"] = str(class_names[sample["true"]])
            sample["predicted_name"] = str(class_names[predicted])
        samples.append(sample)
    return samples


def concept_maps(model: nn.Module, inputs: torch.Tensor) -> np.ndarray | None:
    """The per-concept attention maps ``(N, K, h, w)`` of a concept model (one with a
    ``concept_attention(x)`` method, e.g. ``cct``), in eval mode; None for other models."""
    if not callable(getattr(model, "concept_attention", None)):
        return None
    with eval_mode(model), torch.no_grad():
        return model.concept_attention(inputs).float().cpu().numpy()


def explain_model(
    model: nn.Module,
    x: Any,
    y: Any,
    *,
    num_samples: int = 6,
    top_k: int = 3,
    ig_steps: int = 32,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    pushed_images: Any = None,
) -> dict:
    """Explain ``model`` on a few samples of ``(x, y)`` chosen by :func:`select_samples`.

    Runs on the CPU (the model is moved there). Every model gets Integrated Gradients maps of
    its predicted class; a :class:`PrototypeModel` also gets its prototype gallery and
    per-sample prototype decompositions (:func:`explain_samples`); a part-prototype model's
    listed prototypes also get the ``box`` of the input region that looks like them
    (:func:`~components.explain.push_gallery.add_sample_regions`).

    Args:
        model: a trained model.
        x: inputs ``(N, *input_shape)``, e.g. the test split.
        y: ``(N,)`` true labels.
        num_samples: samples to explain.
        top_k: prototypes listed per sample.
        ig_steps: quadrature steps of Integrated Gradients.
        class_names: optional class names added to the sample dicts.
        seed: seed of the sample choice.
        pushed_images: the training sample each prototype was pushed onto, in prototype order;
            with it, a pushed model's gallery shows the training sample each prototype was
            projected onto and its region (:func:`pushed_gallery`) instead of decoded prototypes.

    Returns:
        ``kind`` (``"prototype"`` or ``"attribution"``), ``indices`` (chosen rows of ``x``),
        ``samples`` (JSON-serialisable dicts, each with ``probability`` of the predicted class and
        ``ig_delta``), ``inputs`` (the chosen inputs), ``attributions`` (same shape),
        ``ig_delta`` (per-sample completeness error), ``gallery`` (pushed prototypes' source
        samples, similarity maps and regions, or decoded prototypes; ``None`` for models with
        neither) and, for concept models, ``concept_maps`` (:func:`concept_maps` of the
        chosen inputs). Inputs and gallery images are standardised, as the model sees them.
    """
    inputs_all = as_float_tensor(x)
    labels_all = as_labels(y, "y")
    if len(inputs_all) != len(labels_all):
        raise ValueError(f"x has {len(inputs_all)} rows but y has {len(labels_all)}")
    indices = select_samples(labels_all, num_samples, seed)
    inputs, labels = inputs_all[indices], labels_all[indices]
    logits = predict_logits(model, inputs)
    predicted = logits.argmax(dim=1)
    attributions, delta = integrated_gradients(model, inputs, predicted, n_steps=ig_steps)

    is_prototype = isinstance(model, PrototypeModel)
    if is_prototype:
        samples = explain_samples(
            model, inputs, labels, top_k=top_k, class_names=class_names, indices=indices
        )
        if has_activation_maps(model):
            add_sample_regions(model, inputs, samples)
    else:
        samples = _basic_samples(logits, labels, indices, class_names)
    probabilities = torch.softmax(logits.double(), dim=1)
    for row, sample in enumerate(samples):
        sample["probability"] = float(probabilities[row, sample["predicted"]])
        sample["ig_delta"] = float(delta[row])
    if is_prototype and pushed_images is not None and is_pushed(model):
        gallery = pushed_gallery(model, pushed_images)
    elif is_prototype and hasattr(model, "decode_prototypes"):
        gallery = prototype_gallery(model)
    else:
        gallery = None
    result = {
        "kind": "prototype" if is_prototype else "attribution",
        "indices": [int(i) for i in indices],
        "samples": samples,
        "inputs": inputs.numpy(),
        "attributions": attributions,
        "ig_delta": delta,
        "gallery": gallery,
    }
    maps = concept_maps(model, inputs)
    if maps is not None:
        result["concept_maps"] = maps
    return result
