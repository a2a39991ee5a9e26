"""Which part of a registered model self-supervised pre-training trains: its encoder.

* models with an ``encoder`` (``proto_ae``, ``prob_psenn``, ...): that encoder (input -> latent);
* models with a conv trunk ``features`` (``cnn``, ``protopnet``, ``st_protopnet``, ...): the trunk;
* ``mlp``: its hidden layers, i.e. ``net`` without the final linear layer.

The embedding is the part's output flattened to ``(N, D)``: on the small inputs here (8x8
digits, 32x32 parts) a flattened conv map keeps the spatial layout the prototype layers later
use, where the papers' ResNets average-pool it away.
"""

from __future__ import annotations

import torch
from torch import nn


class EncoderError(ValueError):
    """A model has no part that pre-training knows how to train."""


def encoder_part(model: nn.Module) -> str:
    """The attribute of ``model`` that holds its encoder: ``encoder``, ``features`` or ``net``.

    Raises:
        EncoderError: naming the model type when it has none of them.
    """
    for name in ("encoder", "features"):
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    if isinstance(getattr(model, "net", None), nn.Sequential) and len(model.net) > 1:
        return "net"
    raise EncoderError(
        f"{type(model).__name__} has no encoder, conv trunk 'features' or hidden layers 'net' "
        "to pre-train (use proto_ae, prob_psenn, cnn, protopnet, st_protopnet or mlp)"
    )


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder module of ``model`` (shares its parameters with the model)."""
    part = encoder_part(model)
    module = getattr(model, part)
    return module[:-1] if part == "net" else module  # mlp: drop the output layer


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's tensors, keyed as in ``model.state_dict()`` (``encoder.0.weight``, ...)."""
    part = encoder_part(model)
    return {
        f"{part}.{key}": value.detach().cpu().contiguous()
        for key, value in encoder_of(model).state_dict().items()
    }


class Embedder(nn.Module):
    """``encoder`` followed by flattening: a batch ``(N, ...)`` -> embeddings ``(N, D)``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)
