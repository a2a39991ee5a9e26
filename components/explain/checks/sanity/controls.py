"""Model-independent "explanations" the sanity check runs as controls (never offered as post-hoc
methods): they must be flagged, since no randomisation of the model can change them.

Adebayo et al. (2018) compare the saliency methods with a Sobel edge detector, which looks like a
plausible saliency map on images while ignoring the model entirely.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from torch import nn


def edge_detector(model: nn.Module, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of each channel of ``(N, C, H, W)`` images; on other inputs the
    input's magnitude (gradient x input with a constant gradient). ``model`` and ``target``
    are ignored: that is the point."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        return np.abs(x)
    rows = ndimage.sobel(x, axis=2)
    columns = ndimage.sobel(x, axis=3)
    return np.hypot(rows, columns).astype(np.float32)
