"""Explanation methods: prototype decompositions and post-hoc attributions."""

from components.explain.attributions import integrated_gradients
from components.explain.explain import explain_model, select_samples
from components.explain.prototypes import explain_samples, prototype_gallery

__all__ = [
    "explain_model",
    "explain_samples",
    "integrated_gradients",
    "prototype_gallery",
    "select_samples",
]
