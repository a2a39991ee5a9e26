"""``TrainConfig`` refuses values that would train wrongly rather than fail, naming what is
allowed."""

from __future__ import annotations

import re

import pytest

from components.training.config import TrainConfig


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # torch's clip_grad_norm_ scales by max_norm / norm: -1 would reverse every step
        ({"grad_clip": -1.0}, "train.grad_clip=-1.0 (must be >= 0; 0 does not clip)"),
        # a negative min_delta counts a worse epoch as an improvement
        ({"min_delta": -0.1}, "train.min_delta=-0.1 (must be >= 0)"),
    ],
)
def test_a_value_that_would_train_wrongly_is_refused(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**values)
    assert TrainConfig(grad_clip=0.0, min_delta=0.0).grad_clip == 0.0  # off, and no threshold
