"""scikit-learn's embedded datasets as sources."""

from __future__ import annotations

import numpy as np
from sklearn import datasets

from components.data.labeled import LabeledArrays

# Natural sample shape of each source; digits are 8x8 single-channel images.
_SHAPES: dict[str, tuple[int, ...]] = {
    "digits": (1, 8, 8),
    "breast_cancer": (30,),
    "wine": (13,),
}
_LOADERS = {
    "digits": datasets.load_digits,
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
}


def load_embedded(name: str) -> LabeledArrays:
    """Load one of scikit-learn's embedded datasets.

    Args:
        name: ``digits``, ``breast_cancer`` or ``wine``.

    Returns:
        The whole dataset; class names are the dataset's target names as strings, feature
        names its feature names (none for the digit images).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown embedded dataset {name!r}: expected one of {list(_LOADERS)}")
    bunch = _LOADERS[name]()
    return LabeledArrays(
        x=np.ascontiguousarray(bunch.data, dtype=np.float32),
        y=np.asarray(bunch.target, dtype=np.int64),
        class_names=tuple(str(t) for t in bunch.target_names),
        feature_shape=_SHAPES[name],
        feature_names=None if name == "digits" else tuple(map(str, bunch.feature_names)),
    )
