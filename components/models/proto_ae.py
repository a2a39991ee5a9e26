"""PrototypeDL: an autoencoder with a prototype layer (Li, Liu, Chen, Rudin, AAAI 2018,
"Deep Learning for Case-Based Reasoning through Prototypes").

The encoder ``f`` maps an input to a latent vector ``z``; the prototype layer holds ``m`` learned
vectors ``p_j`` in that latent space and outputs the squared distances ``d_j = ||z - p_j||^2``;
a linear layer maps ``d`` to class logits. The decoder ``g`` reconstructs inputs from latents, so
every prototype can be decoded and looked at. Training minimises (paper, eq. 1, and its reference
code's defaults ``lambda_class=20, lambda_ae=lambda_1=lambda_2=1``)::

    total = lambda_class * CE + lambda_ae * R + lambda_1 * R1 + lambda_2 * R2

with ``R`` the reconstruction error, ``R1`` pulling every prototype towards some encoded input
(interpretability: decoded prototypes look like real data) and ``R2`` pulling every encoded input
towards some prototype.

Measured on sklearn digits (standardised, stratified 70/15/15, seed 0): the default config with
Adam (lr 2e-3, the reference code's rate), batch 64, 300 epochs and a cosine schedule reaches
0.974-0.981 test accuracy over seeds 0-4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from components.models.autoencoders import build_autoencoder
from components.models.base import (
    ModelOutput,
    PrototypeExplanation,
    PrototypeModel,
    check_batch,
    check_build_args,
    override_config,
    positive_ints,
    register_model,
)


@dataclass(frozen=True)
class ProtoAEConfig:
    """Hyperparameters of :class:`ProtoAE`.

    Attributes:
        num_prototypes: number ``m`` of prototypes (the paper used 15 for MNIST).
        conv_channels: image encoder filters per 3x3 stride-2 conv layer (the last one sets the
            latent channels); the decoder mirrors them with transposed convs.
        hidden_sizes: tabular encoder hidden widths (the decoder mirrors them).
        latent_dim: tabular latent size (for images it is ``conv_channels[-1] * h * w``).
        lambda_class: weight of the cross-entropy term.
        lambda_ae: weight of the reconstruction term ``R``.
        lambda_1: weight of ``R1`` (every prototype close to some encoded input).
        lambda_2: weight of ``R2`` (every encoded input close to some prototype).
    """

    num_prototypes: int = 15
    conv_channels: tuple[int, ...] = (32, 10)
    hidden_sizes: tuple[int, ...] = (64,)
    latent_dim: int = 10
    lambda_class: float = 20.0
    lambda_ae: float = 1.0
    lambda_1: float = 1.0
    lambda_2: float = 1.0

    def __post_init__(self) -> None:
        positive_ints(self, "conv_channels")
        positive_ints(self, "hidden_sizes", allow_empty=True)
        for name in ("num_prototypes", "latent_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ProtoAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lambda_class", "lambda_ae", "lambda_1", "lambda_2"):
            if getattr(self, name) < 0:
                raise ValueError(f"ProtoAEConfig.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def tiny(cls) -> ProtoAEConfig:
        """The small variant used by tests."""
        return cls(num_prototypes=4, conv_channels=(4, 2), hidden_sizes=(8,), latent_dim=3)


@dataclass
class ProtoAEOutput(ModelOutput):
    """:class:`ProtoAE` forward output.

    Attributes:
        latent: encoded inputs ``f(x)``, ``(N, latent_dim)``.
        reconstruction: decoded latents ``g(f(x))``, ``(N, *input_shape)``.
        distances: squared distances to each prototype, ``(N, m)``.
    """

    latent: torch.Tensor
    reconstruction: torch.Tensor
    distances: torch.Tensor


def squared_distances(latent: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``||latent_i - prototypes_j||^2`` for every pair, shape ``(N, m)``.

    Computed from differences rather than the ``|a|^2 - 2ab + |b|^2`` expansion so that it is
    never negative and is exactly zero when a latent sits on a prototype.
    """
    return (latent.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(dim=-1)


def r1_loss(latent: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Paper's ``R1``: mean over prototypes of the squared distance to the closest latent."""
    return squared_distances(latent, prototypes).min(dim=0).values.mean()


def r2_loss(latent: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Paper's ``R2``: mean over latents of the squared distance to the closest prototype."""
    return squared_distances(latent, prototypes).min(dim=1).values.mean()


def reconstruction_loss(reconstruction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Paper's ``R``: squared L2 norm of the reconstruction error per sample, batch mean.

    The norm sums over features (as in the paper and its reference code), so ``R`` scales with
    the input size; it is not the per-element mean of ``F.mse_loss``.
    """
    return (reconstruction - x).pow(2).flatten(1).sum(dim=1).mean()


def similarity_from_distance(distances: torch.Tensor) -> torch.Tensor:
    """Display similarity ``log((d + 1) / (d + 1e-4))`` (ProtoPNet's; large when ``d`` is ~0).

    Used only in explanations; the logits depend on the raw distances.
    """
    return torch.log((distances + 1.0) / (distances + 1e-4))


class ProtoAE(PrototypeModel):
    """PrototypeDL classifier: autoencoder + prototype layer + linear layer over distances.

    Image input ``(C, H, W)`` uses a conv autoencoder, tabular ``(D,)`` an MLP one. Prototypes
    are initialised uniformly in [0, 1) (as in the reference code), the range of the sigmoid
    latent.

    Args:
        input_shape: ``(C, H, W)`` or ``(D,)``.
        num_classes: number of output classes.
        config: hyperparameters and loss weights.

    Raises:
        ValueError: for an input rank other than 1 or 3.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: ProtoAEConfig = ProtoAEConfig(),
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="proto_ae")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config = config
        autoencoder = build_autoencoder(self.input_shape, config, model="proto_ae")
        self.encoder, self.decoder = autoencoder.encoder, autoencoder.decoder
        self.latent_dim = autoencoder.latent_dim
        self.prototype_vectors = nn.Parameter(torch.rand(config.num_prototypes, self.latent_dim))
        self.classifier = nn.Linear(config.num_prototypes, num_classes)

    @property
    def prototypes(self) -> torch.Tensor:
        """Prototype vectors in the latent space, ``(m, latent_dim)``."""
        return self.prototype_vectors

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder's latent ``(N, latent_dim)``: the space the prototypes live in."""
        check_batch(x, self.input_shape, model="proto_ae")
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> ProtoAEOutput:
        check_batch(x, self.input_shape, model="proto_ae")
        latent = self.encoder(x)
        distances = squared_distances(latent, self.prototype_vectors)
        return ProtoAEOutput(
            logits=self.classifier(distances),
            latent=latent,
            reconstruction=self.decoder(latent),
            distances=distances,
        )

    def loss(
        self, output: ProtoAEOutput, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Named terms ``ce, reconstruction, r1, r2`` and their weighted sum ``total``."""
        cfg = self.config
        terms = {
            "ce": self.cross_entropy(output.logits, y),
            "reconstruction": reconstruction_loss(output.reconstruction, x),
            "r1": r1_loss(output.latent, self.prototype_vectors),
            "r2": r2_loss(output.latent, self.prototype_vectors),
        }
        terms["total"] = (
            cfg.lambda_class * terms["ce"]
            + cfg.lambda_ae * terms["reconstruction"]
            + cfg.lambda_1 * terms["r1"]
            + cfg.lambda_2 * terms["r2"]
        )
        return terms

    @torch.no_grad()
    def decode_prototypes(self) -> torch.Tensor:
        """Prototypes mapped back to input space by the decoder, ``(m, *input_shape)``."""
        return self.decoder(self.prototype_vectors).reshape(-1, *self.input_shape)

    @torch.no_grad()
    def prototype_classes(self) -> torch.Tensor:
        """The class each prototype votes for, ``(m,)``: ``argmin_k w[k, j]``.

        ``logit_k = sum_j w[k, j] * d_j + b_k`` and ``d_j`` shrinks as a sample nears prototype
        ``j``; moving closer raises ``logit_k`` by ``-w[k, j]`` per unit of distance, most for
        the class with the most negative weight. (In a trained model that weight is negative.)
        """
        return self.classifier.weight.argmin(dim=0)

    @torch.no_grad()
    def explain(self, x: torch.Tensor, top_k: int = 3) -> list[PrototypeExplanation]:
        """Per-sample explanation of the predicted class's logit.

        Prototype ``j`` contributes ``w[k, j] * d_j`` to logit ``k``; over all prototypes the
        contributions plus ``b_k`` equal the logit exactly. The ``top_k`` prototypes by absolute
        contribution are listed, with similarities from :func:`similarity_from_distance`.

        Raises:
            ValueError: if ``top_k`` is not in ``[1, num_prototypes]``.
        """
        m = self.config.num_prototypes
        if not 1 <= top_k <= m:
            raise ValueError(f"top_k must be in [1, {m}] (the number of prototypes), got {top_k}")
        output = self.forward(x)
        predicted = output.logits.argmax(dim=1)
        weights = self.classifier.weight[predicted]  # (N, m)
        contributions = weights * output.distances
        top = contributions.abs().topk(top_k, dim=1).indices
        similarities = similarity_from_distance(output.distances)
        votes = self.prototype_classes()
        explanations = []
        for i, k in enumerate(predicted.tolist()):
            idx = top[i]
            explanations.append(
                PrototypeExplanation(
                    class_index=k,
                    logit=output.logits[i, k].item(),
                    bias=self.classifier.bias[k].item(),
                    prototype_indices=idx.tolist(),
                    distances=output.distances[i, idx].tolist(),
                    similarities=similarities[i, idx].tolist(),
                    contributions=contributions[i, idx].tolist(),
                    total_contribution=contributions[i].sum().item(),
                    extras={"prototype_classes": votes[idx].tolist()},
                )
            )
        return explanations


@register_model("proto_ae")
def build_proto_ae(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> ProtoAE:
    """Registry builder: ``kwargs`` override :class:`ProtoAEConfig` fields."""
    base = ProtoAEConfig.tiny() if tiny else ProtoAEConfig()
    config = override_config(base, kwargs, model="proto_ae")
    return ProtoAE(input_shape=input_shape, num_classes=num_classes, config=config)
