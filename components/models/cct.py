"""Concept-Centric Transformer (``cct``): concept slots as a shared global workspace.

Hong, Park and Pavlic, "Concept-Centric Transformers: Enhancing Model Interpretability through
Object-Centric Concept Learning within a Shared Global Workspace", WACV 2024; reference code
github.com/jyhong0304/concept_centric_transformers (``ctc/ctc.py`` ``SlotCTC`` /
``ConceptCentricTransformer``, ``ctc/model_utils.py`` ``ConceptQuerySlotAttention`` /
``CrossAttention``, ``ctc/loss.py``, ``ctc/ctc_model.py``), read and followed:

1. a convolutional tokenizer (``conv3x3 -> ReLU -> maxpool 3/2``, each layer halves the grid)
   and a small pre-norm transformer encoder with fixed sinusoidal positions turn the image into
   ``T = h * w`` token embeddings;
2. the **concept memory**: ``K`` concept slots extracted from the tokens by slot attention
   (softmax over the slots, so concepts compete for tokens; the weights renormalised over the
   tokens, so each slot reads a weighted mean of the tokens; GRU update);
3. **cross-attention** from every token (query) to the concepts (keys, values), softmax over the
   concepts: each token's distribution over the ``K`` concepts is the explanation
   (:meth:`CCT.concept_attention` gives it as ``(N, K, h, w)`` maps); the attended values are
   projected to class scores per token and averaged over the tokens (the reference's spatial
   stream);
4. the loss: ``ce + expl_weight * explanation + sparsity_weight * sparsity``. ``explanation``
   is the reference's ``spatial_concepts_cost``: ``K * MSE`` between each token's concept
   attention and its target distribution (targets normalised over the concepts; tokens whose
   target is all zero, e.g. background, are skipped); it is only present when concept targets
   are given (:meth:`CCT.concept_targets`, e.g. from part masks with
   :func:`mask_concept_targets`). ``sparsity`` is the reference's entropy of the attention
   (``concepts_sparsity_cost``). Coefficients: ``expl_weight = 2`` (the reference's MNIST
   script; its parser default is 5), ``sparsity_weight = 0`` (the reference's default).
   ``sennflow run model=cct`` trains without concept targets (the fit loop hands no part masks
   to a loss), so there the explanation term is absent; ``bench/cct_parts.py`` trains on
   ``parts`` with the part masks as targets and measures localisation with and without them.

Departures: the slots start from learned per-concept queries (the reference's BO-QSA variant,
``ConceptQuerySlotAttention``, with its straight-through last iteration) instead of Gaussian
noise plus a learned per-slot offset (``SlotCTC``), so a forward pass is deterministic and
concept ``k`` means the same thing in every image, which explanations and concept supervision
need. Only the spatial concept stream is built: the global (non-spatial) and unsupervised
streams need per-image concept labels that datasets here do not have. The encoder uses
``torch.nn.TransformerEncoderLayer`` (pre-norm, GELU) without stochastic depth, and the returned
attention is taken before attention dropout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from components.models.base import (
    ModelOutput,
    SennModel,
    check_batch,
    check_build_args,
    override_config,
    register_model,
)

_EPS = 1e-8


@dataclass(frozen=True)
class CCTConfig:
    """Hyperparameters of :class:`CCT`.

    Attributes:
        embed_dim: token and concept width ``D``.
        conv_layers: tokenizer conv layers; each halves height and width.
        encoder_layers: transformer encoder layers over the tokens.
        num_heads: attention heads (encoder and cross-attention); must divide ``embed_dim``.
        mlp_ratio: encoder feed-forward width as a multiple of ``embed_dim`` (reference: 1).
        num_concepts: concept slots ``K``.
        slot_iterations: slot-attention rounds (reference: 1).
        dropout: dropout in the encoder and after the cross-attention projection.
        attention_dropout: dropout on the cross-attention weights (reference: 0.1).
        expl_weight: coefficient of the explanation loss (reference MNIST script: 2).
        sparsity_weight: coefficient of the attention entropy (reference default: 0).
    """

    embed_dim: int = 64
    conv_layers: int = 2
    encoder_layers: int = 2
    num_heads: int = 2
    mlp_ratio: float = 1.0
    num_concepts: int = 8
    slot_iterations: int = 1
    dropout: float = 0.1
    attention_dropout: float = 0.1
    expl_weight: float = 2.0
    sparsity_weight: float = 0.0

    def __post_init__(self) -> None:
        for key in ("embed_dim", "conv_layers", "num_heads", "num_concepts", "slot_iterations"):
            if int(getattr(self, key)) != getattr(self, key) or getattr(self, key) < 1:
                raise ValueError(
                    f"model.params.{key} must be an int >= 1, got {getattr(self, key)}"
                )
        if self.encoder_layers < 0:
            raise ValueError(f"model.params.encoder_layers must be >= 0, got {self.encoder_layers}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"model.params.num_heads={self.num_heads} must divide "
                f"model.params.embed_dim={self.embed_dim}"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"model.params.mlp_ratio must be > 0, got {self.mlp_ratio}")
        for key in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"model.params.{key} must be in [0, 1), got {getattr(self, key)}")
        for key in ("expl_weight", "sparsity_weight"):
            if getattr(self, key) < 0:
                raise ValueError(f"model.params.{key} must be >= 0, got {getattr(self, key)}")

    @classmethod
    def tiny(cls) -> CCTConfig:
        """The small variant used by tests."""
        return cls(embed_dim=8, encoder_layers=0, num_heads=1, num_concepts=4, dropout=0.0)


@dataclass
class CCTOutput(ModelOutput):
    """:class:`CCT` forward output.

    Attributes:
        concept_attention: ``(N, T, K)`` each token's attention over the concepts (rows sum
            to 1), averaged over heads, before attention dropout.
        slot_weights: ``(N, K, T)`` the last slot-attention round's weights; each concept's
            row is a distribution over the tokens it read.
    """

    concept_attention: torch.Tensor
    slot_weights: torch.Tensor


class ConceptSlotAttention(nn.Module):
    """Slot attention from learned per-concept queries (BO-QSA, as in the reference).

    Args:
        dim: token and slot width.
        num_slots: concepts ``K``.
        iterations: attention rounds.
    """

    def __init__(self, dim: int, num_slots: int, iterations: int) -> None:
        super().__init__()
        self.iterations = iterations
        self.slots_init = nn.Parameter(torch.empty(1, num_slots, dim))
        nn.init.xavier_uniform_(self.slots_init)
        self.norm_inputs, self.norm_slots = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.project_q = nn.Linear(dim, dim, bias=False)
        self.project_k = nn.Linear(dim, dim, bias=False)
        self.project_v = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slots ``(N, K, D)`` and the last round's weights ``(N, K, T)`` (sum 1 over ``T``)."""
        n, _, d = tokens.shape
        tokens = self.norm_inputs(tokens)
        k, v = self.project_k(tokens), self.project_v(tokens)
        init = self.slots_init.expand(n, -1, -1)
        slots, weights = init, init.new_zeros(0)
        for step in range(self.iterations):
            if step == self.iterations - 1:  # BO-QSA: straight-through gradient to the queries
                slots = slots.detach() + init - init.detach()
            q = self.project_q(self.norm_slots(slots))
            logits = torch.einsum("nkd,ntd->nkt", q, k) * d**-0.5
            attn = logits.softmax(dim=1)  # slots compete for each token
            weights = attn / (attn.sum(dim=-1, keepdim=True) + _EPS)
            updates = weights @ v
            slots = self.gru(updates.reshape(-1, d), slots.reshape(-1, d)).view(n, -1, d)
        return slots, weights


class ConceptCrossAttention(nn.Module):
    """Tokens (queries) attend to concepts (keys, values); softmax over the concepts.

    Args:
        dim: width ``D``.
        num_heads: heads.
        num_classes: outputs per token.
        attention_dropout: dropout on the attention weights.
        dropout: dropout after the output projection.
    """

    def __init__(
        self, dim: int, num_heads: int, num_classes: int, attention_dropout: float, dropout: float
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.attn_drop = nn.Dropout(attention_dropout)
        self.proj = nn.Linear(dim, num_classes)
        self.proj_drop = nn.Dropout(dropout)

    def forward(
        self, tokens: torch.Tensor, concepts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token class scores ``(N, T, C)`` and head-averaged attention ``(N, T, K)``."""
        n, t, d = tokens.shape
        heads = self.num_heads
        q = self.q(tokens).view(n, t, heads, d // heads).transpose(1, 2)
        k, v = self.kv(concepts).view(n, -1, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (d // heads) ** -0.5).softmax(dim=-1)
        out = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj_drop(self.proj(out)), attn.mean(dim=1)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The reference's fixed 1-D sine/cosine position embedding, ``(1, length, dim)``."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    rate = 10000 ** (2 * (torch.arange(dim) // 2) / dim)
    table = pos / rate
    table[:, 0::2], table[:, 1::2] = table[:, 0::2].sin(), table[:, 1::2].cos()
    return table[None]


def explanation_loss(attention: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``K * MSE`` between attention ``(N, T, K)`` and targets normalised over ``K``.

    Tokens whose target sums to zero (no concept there) are left out; zero if none is left
    (the reference's ``spatial_concepts_cost``).
    """
    norm = targets.sum(dim=-1, keepdim=True)
    valid = norm.squeeze(-1) > 0
    if not bool(valid.any()):
        return attention.new_zeros(())
    wanted = targets[valid] / norm[valid]
    return attention.shape[-1] * F.mse_loss(attention[valid], wanted.to(attention.dtype))


def attention_entropy(attention: torch.Tensor) -> torch.Tensor:
    """Mean of ``-p log p`` over every entry (the reference's ``concepts_sparsity_cost``)."""
    return -(attention * torch.log(attention + _EPS)).mean()


def mask_concept_targets(
    masks: torch.Tensor, grid: tuple[int, int], num_concepts: int
) -> torch.Tensor:
    """Concept targets ``(N, h*w, K)`` from part label maps ``(N, H, W)`` (0: background).

    Concept ``k`` is part label ``k + 1``; each token's target is the share of its area that
    each part covers (area pooling of the one-hot maps to the token grid).

    Raises:
        ValueError: a label exceeds ``num_concepts`` (there is no concept for that part).
    """
    labels = torch.as_tensor(masks).long()
    top = int(labels.max()) if labels.numel() else 0
    if top > num_concepts:
        raise ValueError(
            f"part label {top} has no concept: model.params.num_concepts={num_concepts} must "
            f"be at least the number of parts ({top})"
        )
    onehot = F.one_hot(labels, num_concepts + 1)[..., 1:].permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, grid).flatten(2).transpose(1, 2)


class CCT(SennModel):
    """Concept-Centric Transformer for images ``(C, H, W)`` (see the module docstring).

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: number of output classes.
        config: hyperparameters.

    Raises:
        ValueError: if ``input_shape`` is not an image shape.
    """

    def __init__(
        self, *, input_shape: tuple[int, ...], num_classes: int, config: CCTConfig = CCTConfig()
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="cct")
        if len(input_shape) != 3:
            raise ValueError(
                f"model 'cct' needs image input (C, H, W), got input_shape {tuple(input_shape)}; "
                "use 'mlp' for tabular (D,) data"
            )
        self.input_shape, self.num_classes, self.config = tuple(input_shape), num_classes, config
        self._concept_targets: torch.Tensor | None = None
        channels, height, width = self.input_shape
        layers: list[nn.Module] = []
        for _ in range(config.conv_layers):
            layers += [
                nn.Conv2d(channels, config.embed_dim, 3, padding=1, bias=False),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            ]
            channels, height, width = config.embed_dim, (height + 1) // 2, (width + 1) // 2
        self.tokenizer = nn.Sequential(*layers)
        self.grid = (height, width)
        self.register_buffer(
            "positions", sinusoidal_positions(height * width, config.embed_dim), persistent=False
        )
        self.encoder = nn.Sequential(*(self._encoder_layer() for _ in range(config.encoder_layers)))
        self.norm = nn.LayerNorm(config.embed_dim)
        self.concept_slots = ConceptSlotAttention(
            config.embed_dim, config.num_concepts, config.slot_iterations
        )
        self.cross_attention = ConceptCrossAttention(
            config.embed_dim,
            config.num_heads,
            num_classes,
            config.attention_dropout,
            config.dropout,
        )

    def _encoder_layer(self) -> nn.Module:
        c = self.config
        return nn.TransformerEncoderLayer(
            c.embed_dim,
            c.num_heads,
            dim_feedforward=max(1, round(c.embed_dim * c.mlp_ratio)),
            dropout=c.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )

    def forward(self, x: torch.Tensor) -> CCTOutput:
        check_batch(x, self.input_shape, model="cct")
        tokens = self.tokenizer(x).flatten(2).transpose(1, 2) + self.positions
        tokens = self.norm(self.encoder(tokens))
        concepts, slot_weights = self.concept_slots(tokens)
        scores, attention = self.cross_attention(tokens, concepts)
        return CCTOutput(
            logits=scores.mean(dim=1), concept_attention=attention, slot_weights=slot_weights
        )

    def concept_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Per-concept attention maps ``(N, K, h, w)`` on the token grid: at every position
        the concepts' attention sums to 1."""
        attention = self(x).concept_attention
        return attention.transpose(1, 2).reshape(len(x), -1, *self.grid)

    @contextlib.contextmanager
    def concept_targets(self, targets: torch.Tensor) -> Iterator[None]:
        """Within the block, :meth:`loss` adds the explanation term against ``targets``
        ``(N, T, K)`` (e.g. :func:`mask_concept_targets`); they carry no gradient.

        Raises:
            ValueError: ``targets`` is not ``(N, h*w, num_concepts)``.
        """
        tokens, k = self.grid[0] * self.grid[1], self.config.num_concepts
        if targets.dim() != 3 or tuple(targets.shape[1:]) != (tokens, k):
            raise ValueError(
                f"concept targets must have shape (N, {tokens}, {k}) (tokens, concepts), got "
                f"{tuple(targets.shape)}"
            )
        previous, self._concept_targets = self._concept_targets, targets.detach()
        try:
            yield
        finally:
            self._concept_targets = previous

    def loss(self, output: CCTOutput, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``ce``, ``sparsity`` (attention entropy) and, with concept targets, ``explanation``."""
        ce = self.cross_entropy(output.logits, y)
        sparsity = attention_entropy(output.concept_attention)
        terms = {"ce": ce, "sparsity": sparsity}
        total = ce + self.config.sparsity_weight * sparsity
        if self._concept_targets is not None:
            targets = self._concept_targets.to(output.concept_attention.device)
            terms["explanation"] = explanation_loss(output.concept_attention, targets)
            total = total + self.config.expl_weight * terms["explanation"]
        return {"total": total, **terms}


@register_model("cct")
def build_cct(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> CCT:
    """Registry builder: ``kwargs`` override :class:`CCTConfig` fields."""
    config = override_config(CCTConfig.tiny() if tiny else CCTConfig(), kwargs, model="cct")
    return CCT(input_shape=input_shape, num_classes=num_classes, config=config)
