"""Input batches as tensors, and the device a model is on: what every stage that feeds a model
shares.

It lives outside every component package so that evaluation, explanation and perturbation can
all use it without importing one another.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_float_tensor(x: Any, name: str = "x") -> torch.Tensor:
    """Convert a batch of inputs (numpy array or tensor) to a float32 tensor."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(
            f"{name}: expected a batch of shape (N, *input_shape), got {tuple(x.shape)}"
        )
    return x.float()


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
