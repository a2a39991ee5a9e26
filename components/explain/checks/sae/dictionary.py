"""Sparse dictionaries over a layer's activations: sparse autoencoders and transcoders.

* Sparse autoencoder (Bricken et al. 2023, "Towards Monosemanticity"; Cunningham et al. 2023):
  ``f = ReLU(W_enc (x - b_dec) + b_enc)``, ``x_hat = W_dec f + b_dec``, trained on
  ``||x_hat - x||^2 + l1 * sum_i |f_i|`` with the decoder's columns kept at unit norm (so the L1
  term cannot be dodged by shrinking ``f`` and growing ``W_dec``).
* Transcoder (Dunefsky et al. 2024, "Transcoders Find Interpretable LLM Feature Circuits",
  github.com/jacobdunefsky/transcoder_circuits): the same wide ReLU layer reading a sublayer's
  *input* and predicting its *output*, ``y_hat = W_dec ReLU(W_enc x + b_enc) + b_dec``, trained
  on ``||y_hat - y||^2 + l1 * sum_i |f_i|``; it replaces the sublayer when spliced in.

Both standardise their activations by one scale each (Conerly et al.'s 2024 update: the mean
squared norm becomes the dimension), so one ``l1`` means the same on any layer; the MSE is
averaged over dimensions. Departure: no dead-feature resampling (Bricken et al.) or
ghost grads; dead features are counted and reported instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

KINDS = ("sae", "transcoder")
BATCH_SIZE = 64
LEARNING_RATE = 3e-3


class SparseDictionary(nn.Module):
    """A wide ReLU dictionary: an SAE (``tied_input_bias``) or a transcoder.

    Args:
        d_in: input width; d_out: output width (= ``d_in`` for an SAE).
        width: number of features.
        sae: subtract the decoder bias from the input before encoding (the SAE's tied bias).
        in_scale, out_scale: the inputs and outputs are divided / multiplied by these.
    """

    def __init__(
        self, d_in: int, d_out: int, width: int, *, sae: bool, in_scale=1.0, out_scale=1.0
    ) -> None:
        super().__init__()
        self.sae = sae
        self.encoder = nn.Linear(d_in, width)
        self.decoder = nn.Linear(width, d_out)
        self.register_buffer("in_scale", torch.tensor(float(in_scale)))
        self.register_buffer("out_scale", torch.tensor(float(out_scale)))
        nn.init.zeros_(self.encoder.bias)
        nn.init.zeros_(self.decoder.bias)
        self.normalize_decoder()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``(rows, width)`` of raw input rows ``x``."""
        x = x / self.in_scale
        if self.sae:
            x = x - self.decoder.bias
        return torch.relu(self.encoder(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Raw output rows of feature activations ``f``."""
        return self.decoder(f) * self.out_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Unit-norm decoder columns (one column per feature)."""
        norms = self.decoder.weight.norm(dim=0, keepdim=True).clamp_min(1e-8)
        self.decoder.weight.div_(norms)


def rms_scale(rows: np.ndarray) -> float:
    """The scale that makes the mean squared row norm equal the row width."""
    mean_sq = float(np.mean(np.sum(rows.astype(np.float64) ** 2, axis=1)))
    return max(np.sqrt(mean_sq / rows.shape[1]), 1e-8)


def fit_dictionary(
    kind: str,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    expansion: int,
    l1: float,
    epochs: int,
    seed: int = 0,
) -> SparseDictionary:
    """Train an SAE (``targets`` is ignored: it reconstructs ``inputs``) or a transcoder
    (``inputs`` -> ``targets``) with Adam, minibatches of :data:`BATCH_SIZE`.

    Args:
        kind: ``sae`` or ``transcoder``.
        inputs, targets: float32 ``(rows, d_in)`` and ``(rows, d_out)`` activation rows.
        expansion: features per output dimension (width = expansion * d_out).
        l1: the sparsity coefficient.
        epochs: passes over the rows.
        seed: initialisation and shuffling seed.

    Returns:
        The trained dictionary, in eval mode.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    sae = kind == "sae"
    targets = inputs if sae else targets
    torch.manual_seed(seed)
    in_scale, out_scale = rms_scale(inputs), rms_scale(targets)
    d_in, d_out = inputs.shape[1], targets.shape[1]
    model = SparseDictionary(
        d_in, d_out, expansion * d_out, sae=sae, in_scale=in_scale, out_scale=out_scale
    )
    if sae:  # Bricken et al.: the tied bias starts at the data's centre
        with torch.no_grad():
            model.decoder.bias.copy_(torch.from_numpy(inputs.mean(0) / in_scale))
    x, y = torch.tensor(inputs, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)
    y = y / out_scale
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(BATCH_SIZE):
            f = model.features(x[index])
            loss = dictionary_loss(model.decoder(f), y[index], f, l1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.normalize_decoder()
    return model.eval()


def dictionary_loss(prediction, target, features, l1: float) -> torch.Tensor:
    """Mean squared error (per dimension) plus ``l1`` times the features' mean L1 norm."""
    mse = (prediction - target).pow(2).mean()
    return mse + l1 * features.abs().sum(dim=1).mean()


@torch.no_grad()
def dictionary_stats(
    model: SparseDictionary, inputs: np.ndarray, targets: np.ndarray
) -> dict[str, float | np.ndarray]:
    """L0 (mean active features per row), the fraction of ``targets``' variance explained, each
    feature's firing frequency, and which features never fired (dead) on these rows."""
    x, y = torch.tensor(inputs, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)
    f = model.features(x)
    residual = (model.decode(f) - y).pow(2).sum()
    variance = (y - y.mean(0)).pow(2).sum().clamp_min(1e-12)
    frequency = (f > 0).float().mean(0).numpy()
    return {
        "l0": float((f > 0).float().sum(1).mean()),
        "variance_explained": float(1 - residual / variance),
        "frequency": frequency,
        "dead_fraction": float(np.mean(frequency == 0)),
    }
