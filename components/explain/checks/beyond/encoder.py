"""BEYOND's self-supervised model: an SSL encoder with a linear classifier head.

The reference (allenhzy/BEYOND, ``SimSiamWithCls``) pairs a SimSiam backbone with a linear
classifier trained on its features; the neighbours' labels come from that head, not from the
attacked model. Here the encoder is the run's own pre-training stage output
(``<run>/ssl/checkpoints/best``, or the SSL folder its ``model.json`` names as ``encoder_from``)
when there is one, else a Barlow Twins encoder (:mod:`components.ssl`) trained here, briefly,
on the training split; the head is a linear layer fitted on its embeddings of the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from components.ssl.checkpoint import is_ssl_checkpoint, load_encoder
from components.ssl.config import SSLConfig
from components.ssl.encoders import EncoderError, encoder_part
from components.ssl.learner import pretrain_encoder

HEAD_STEPS = 300  # full-batch Adam steps of the linear head (converged on digits' 1,259 rows)
FALLBACK_MODEL = "mlp"  # the encoder trained here when the run's model has none


@dataclass
class SSLModel:
    """The detector's SSL side: ``embed`` maps inputs to ``(N, D)`` representations, ``head``
    maps representations to class logits; ``source`` says where the encoder came from."""

    embed: nn.Module
    head: nn.Module
    source: str

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def run_ssl_folder(checkpoint: Path, encoder_from: str | None) -> Path | None:
    """The SSL checkpoint of the run that ``checkpoint`` (``<run>/checkpoints/best``) belongs
    to: its pre-training stage's, else the ``encoder_from`` its model was initialised from."""
    stage = Path(checkpoint).parent.parent / "ssl" / "checkpoints" / "best"
    for folder in (stage, Path(encoder_from) if encoder_from else None):
        if folder is not None and is_ssl_checkpoint(folder):
            return folder
    return None


def ssl_model(
    folder: Path | None,
    model: nn.Module,
    spec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    views,
    seed: int,
) -> SSLModel:
    """The encoder of ``folder``, or one trained here on ``x_train``, with a fitted head.

    Args:
        folder: an SSL checkpoint folder, or None to train an encoder here.
        model, spec: the trained model and its :class:`~components.training.checkpoint
            .ModelSpec`; an encoder trained here has the same architecture when the model has
            an encoder part, else it is an ``mlp``'s hidden layers.
        x_train, y_train: the rows the encoder (without labels) and the head are fitted on.
        epochs, views, seed: Barlow Twins' epochs, augmentations and seed.
    """
    if folder is not None:
        embed, source = load_encoder(folder), f"the run's SSL encoder ({folder})"
    else:
        name, tiny, params = _architecture(model, spec)
        cfg = SSLConfig(epochs=epochs, views=views, seed=seed)
        result = pretrain_encoder(
            name, x_train, cfg, num_classes=spec.num_classes, tiny=tiny, model_params=params
        )
        embed = result.embedder
        source = f"a Barlow Twins {name} encoder trained here ({epochs} epochs, no SSL stage)"
    embed = embed.eval().requires_grad_(False)
    head = fit_head(embed, x_train, y_train, spec.num_classes, seed)
    return SSLModel(embed, head, source)


def _architecture(model: nn.Module, spec) -> tuple[str, bool, dict]:
    try:
        encoder_part(model)
    except EncoderError:
        return FALLBACK_MODEL, True, {}
    params = {k: v for k, v in spec.kwargs.items() if k != "pretrained"}
    return spec.name, spec.tiny, params


def fit_head(
    embed: nn.Module, x: np.ndarray, y: np.ndarray, num_classes: int, seed: int
) -> nn.Module:
    """A linear classifier on ``embed``'s representations of ``x`` (cross-entropy, Adam)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        features = embed(torch.as_tensor(x))
        mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    linear = nn.Linear(features.shape[1], num_classes)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2)
    labels, scaled = torch.as_tensor(y), (features - mean) / std
    for _ in range(HEAD_STEPS):
        loss = nn.functional.cross_entropy(linear(scaled), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return nn.Sequential(_Standardise(mean, std), linear).eval().requires_grad_(False)


class _Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
