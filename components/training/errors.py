"""The error of a model that cannot be built.

It sits below both :mod:`components.training.checkpoint` (which builds models from their
spec) and :mod:`components.training.pretrained` (whose ``PretrainedError`` refines it), so
neither has to import the other.
"""

from __future__ import annotations


class ModelSpecError(ValueError):
    """A model cannot be built: unknown name, unknown or invalid parameter, unfit input."""
