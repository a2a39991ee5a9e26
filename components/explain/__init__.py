"""Explanations: the built-in (prototype) explanations here, post-hoc attributions in
:mod:`components.explain.posthoc`, the whole stage in :mod:`components.explain.stage`."""

from components.explain.model_explanations import explain_model, select_samples
from components.explain.prototypes import explain_samples, prototype_gallery

__all__ = [
    "explain_model",
    "explain_samples",
    "prototype_gallery",
    "select_samples",
]
