"""Batched inference: the logits of a model over a whole array of inputs, or over a stream of
batches (a split too large to hold in memory)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from components.tensors import as_float_tensor


def model_logits(output: Any) -> torch.Tensor:
    """The logits of a forward result: a plain tensor or an object with ``.logits``."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"model output of type {type(output).__name__} is neither a tensor nor has .logits"
        )
    return logits


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def predict_logits(
    model: nn.Module,
    x: Any,
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Logits of ``model`` for every row of ``x``, computed in eval mode without gradients.

    The model is moved to ``device``; its train/eval mode is restored afterwards.

    Args:
        model: a module whose forward returns logits or an object with ``.logits``.
        x: inputs ``(N, *input_shape)``, numpy array or tensor.
        batch_size: rows per forward pass.
        device: where the forward passes run.

    Returns:
        ``(N, C)`` float32 logits on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    inputs = as_float_tensor(x)
    chunks = _logit_chunks(model, inputs.split(batch_size), device)
    if not chunks:
        raise ValueError("x: got zero samples")
    return torch.cat(chunks)


def predict_batches(
    model: nn.Module,
    batches: Iterable[tuple[Any, Any]],
    *,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and labels of a stream of ``(x, y)`` batches, holding one batch at a time.

    Batches of the same rows as :func:`predict_logits` uses (same ``batch_size``) give exactly
    its logits. The model's train/eval mode is restored afterwards.

    Args:
        model: a module whose forward returns logits or an object with ``.logits``.
        batches: ``(x, y)`` pairs, e.g. :func:`components.data.reader.iter_batches`.
        device: where the forward passes run.

    Returns:
        ``(N, C)`` float32 logits on the CPU and the ``(N,)`` int64 labels, in stream order.
    """
    labels: list[np.ndarray] = []

    def inputs() -> Iterator[torch.Tensor]:
        for x, y in batches:
            labels.append(np.asarray(y, dtype=np.int64))
            yield as_float_tensor(x)

    chunks = _logit_chunks(model, inputs(), device)
    if not chunks:
        raise ValueError("batches: got zero samples")
    return torch.cat(chunks), np.concatenate(labels)


def _logit_chunks(model: nn.Module, inputs: Iterable[torch.Tensor], device) -> list[torch.Tensor]:
    """One eval-mode, gradient-free forward per input batch: its logits on the CPU."""
    model.to(device)
    with eval_mode(model), torch.no_grad():
        return [model_logits(model(batch.to(device))).float().cpu() for batch in inputs]
