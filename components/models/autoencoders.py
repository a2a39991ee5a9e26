"""Autoencoders of PrototypeDL (Li et al., AAAI 2018), shared by ``proto_ae`` and ``prob_psenn``.

Prototypes live in the latent space of the encoder; the decoder makes them visible.
"""

from __future__ import annotations

import math

from torch import nn


class ConvAutoencoder(nn.Module):
    """Image encoder/decoder: 3x3 stride-2 convs with sigmoids, mirrored by transposed convs.

    The paper stacks four such layers on 28x28 MNIST (28->14->7->4->2, 32 filters, 10 in the
    last layer: a 2x2x10 = 40-d latent). On 8x8 digits two layers (8->4->2) give the same
    2x2x10 latent, so the default is ``conv_channels=(32, 10)``. The paper's decoder ends with a
    sigmoid because MNIST pixels lie in [0, 1]; our inputs are standardised (unbounded, mean 0),
    so the decoder's last layer is linear.
    """

    def __init__(self, input_shape: tuple[int, int, int], channels: tuple[int, ...]) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        sizes = [(height, width)]
        encoder: list[nn.Module] = []
        widths = (in_channels, *channels)
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            encoder += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.Sigmoid()]
            height, width = math.ceil(height / 2), math.ceil(width / 2)
            sizes.append((height, width))
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        self.latent_shape = (channels[-1], height, width)
        self.latent_dim = math.prod(self.latent_shape)

        decoder: list[nn.Module] = [nn.Unflatten(1, self.latent_shape)]
        for layer, (c_in, c_out) in enumerate(zip(widths[:0:-1], widths[-2::-1], strict=True)):
            (h_in, w_in), (h_out, w_out) = sizes[-1 - layer], sizes[-2 - layer]
            # stride-2 conv maps n -> ceil(n/2); undoing it needs one extra row/col when n is even
            padding = (h_out - 2 * h_in + 1, w_out - 2 * w_in + 1)
            decoder.append(nn.ConvTranspose2d(c_in, c_out, 3, 2, padding=1, output_padding=padding))
            decoder.append(nn.Sigmoid())
        decoder.pop()  # linear output: standardised inputs are unbounded
        self.decoder = nn.Sequential(*decoder)


def _linear_stack(widths: tuple[int, ...]) -> nn.Sequential:
    """Linear layers through ``widths`` with ReLUs between them (none after the last)."""
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class MLPAutoencoder(nn.Module):
    """Tabular encoder/decoder: ReLU hidden layers, sigmoid latent, linear reconstruction."""

    def __init__(self, num_features: int, hidden_sizes: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        # sigmoid latent: same bounded [0, 1] box as the conv encoder and the prototypes' init
        self.encoder = nn.Sequential(
            *_linear_stack((num_features, *hidden_sizes, latent_dim)), nn.Sigmoid()
        )
        self.decoder = _linear_stack((latent_dim, *hidden_sizes[::-1], num_features))
        self.latent_dim = latent_dim


def build_autoencoder(
    input_shape: tuple[int, ...], config, *, model: str
) -> ConvAutoencoder | MLPAutoencoder:
    """The conv autoencoder for ``(C, H, W)`` input, the MLP one for ``(D,)``.

    ``config`` provides ``conv_channels`` (images) or ``hidden_sizes`` and ``latent_dim``.

    Raises:
        ValueError: for any other input rank, naming ``model``.
    """
    if len(input_shape) == 3:
        return ConvAutoencoder(tuple(input_shape), config.conv_channels)
    if len(input_shape) == 1:
        return MLPAutoencoder(input_shape[0], config.hidden_sizes, config.latent_dim)
    raise ValueError(
        f"model {model!r} needs image (C, H, W) or tabular (D,) input, got input_shape "
        f"{tuple(input_shape)}"
    )
