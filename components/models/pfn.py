"""Prior-data fitted network (PFN; Müller et al., "Transformers Can Do Bayesian Inference",
ICLR 2022; reference code: automl/TransformersCanDoBayesianInference, ``transformer.py``).

A PFN is a transformer over a *set*: the context rows (features + label) and the query rows
(features only) are tokens without positional encoding, every token attends to the context
tokens and to itself (the reference's ``generate_D_q_matrix``), so a query never sees another
query, and permuting the context does not change any prediction. Trained on tasks drawn from a
prior (``sennflow pfn-train``, :mod:`components.pfn`), one forward pass approximates the
posterior predictive distribution of the queries' labels given the context.

:class:`PFNTransformer` is that network. :class:`PFN` (``model=pfn``) wraps it as a classifier of
a tabular dataset: its context is the training split, stored by the fit loop's push (a stage
with ``push_first``; :meth:`PFN.push_candidates` keeps up to ``context_size`` training rows,
chosen by a fixed hash of their row id, so every rank and every rerun keeps the same rows).
Before a context is stored, each query attends only to itself: the prediction of an empty
context. The prior-fitted weights are loaded from ``model.params.pretrained`` (a
``sennflow pfn-train`` run folder, through :mod:`components.training.pretrained`) and are
never changed on the dataset: the training stage runs one pass at learning-rate multiplier 0,
which stores the context and reports its in-context train/validation loss.

Departures from the reference: post-norm layers with GELU and dropout 0 as there, but class
labels enter through an embedding (the reference feeds the class index as a float through a
linear layer); features are standardised by the context's mean and standard deviation and
zero-padded to ``max_features``, scaled by ``sqrt(max_features / used)`` (TabPFN scales by
``max_features / used``) so that a row's squared norm does not depend on the feature count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from components.models.base import (
    ModelOutput,
    PushCandidates,
    SennModel,
    TrainingStage,
    check_batch,
    check_build_args,
    override_config,
    register_model,
)

_HASH = 2654435761  # Knuth's multiplicative hash: odd, so a bijection on row ids mod 2**32


def attention_mask(size: int, num_context: int, device=None) -> torch.Tensor:
    """``(size, size)`` bool mask, True where attention is *blocked*: every token attends to the
    first ``num_context`` tokens (the context) and to itself, never to another query."""
    allowed = torch.zeros(size, size, dtype=torch.bool, device=device)
    allowed[:, :num_context] = True
    allowed |= torch.eye(size, dtype=torch.bool, device=device)
    return ~allowed


def prepare_features(x: torch.Tensor, num_context: int, max_features: int) -> torch.Tensor:
    """Standardise ``x`` ``(B, S, F)`` by the statistics of its first ``num_context`` rows (none:
    unchanged), zero-pad to ``max_features`` and scale by ``sqrt(max_features / F)``."""
    used = x.shape[-1]
    if used > max_features:
        raise ValueError(f"{used} features exceed the PFN's max_features={max_features}")
    if num_context > 1:
        context = x[:, :num_context]
        mean, std = context.mean(1, keepdim=True), context.std(1, keepdim=True)
        x = torch.where(std > 1e-6, (x - mean) / std.clamp_min(1e-6), torch.zeros_like(x))
    x = x * math.sqrt(max_features / used)
    return nn.functional.pad(x, (0, max_features - used))


class PFNTransformer(nn.Module):
    """The PFN network: ``(x, context labels, context size) -> (B, queries, outputs)``.

    Args:
        num_features: width of a (padded) feature row.
        d_model, nhead, layers, d_ff: the transformer encoder's size.
        outputs: logits per query (classes, or buckets of a bar distribution).
        label_classes: embed context labels as classes (``> 0``: their number) or, with 0,
            as scalars through a linear layer (regression).
    """

    def __init__(
        self,
        *,
        num_features: int,
        d_model: int,
        nhead: int,
        layers: int,
        d_ff: int,
        outputs: int,
        label_classes: int,
    ) -> None:
        super().__init__()
        self.x_encoder = nn.Linear(num_features, d_model)
        self.y_encoder = (
            nn.Embedding(label_classes, d_model) if label_classes else nn.Linear(1, d_model)
        )
        self.label_classes = label_classes
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, d_ff, dropout=0.0, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.decoder = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, outputs))
        for block in self.encoder.layers:  # the reference starts each block as the identity
            for linear in (block.linear2, block.self_attn.out_proj):
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, y_context: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, S, num_features)``: the context rows first, then the queries;
        ``y_context`` ``(B, C)`` the context's labels (``C`` may be 0). Returns ``(B, S - C,
        outputs)``, one row per query."""
        num_context = y_context.shape[1]
        labels = (
            self.y_encoder(y_context.long())
            if self.label_classes
            else self.y_encoder(y_context.float().unsqueeze(-1))
        )
        tokens = self.x_encoder(x)
        tokens = torch.cat([tokens[:, :num_context] + labels, tokens[:, num_context:]], dim=1)
        mask = attention_mask(tokens.shape[1], num_context, device=x.device)
        return self.decoder(self.encoder(tokens, mask=mask)[:, num_context:])


@dataclass(frozen=True)
class PFNConfig:
    """Hyperparameters of :class:`PFN` (the architecture must match the prior-fitted weights).

    Attributes:
        d_model, nhead, layers, d_ff: transformer size (``sennflow pfn-train prior=bnn``'s).
        max_features: width of a padded row; ``None``: the input's own feature count.
        max_classes: classes the network was fitted for (logits beyond the data's are cut).
        context_size: training rows kept as the context (a hashed subsample beyond it).
        pretrained: a ``sennflow pfn-train`` run folder or its ``.safetensors`` file.
    """

    d_model: int = 64
    nhead: int = 4
    layers: int = 4
    d_ff: int = 128
    max_features: int | None = 128
    max_classes: int = 10
    context_size: int = 1024
    pretrained: str | None = None

    def __post_init__(self) -> None:
        for name in ("d_model", "nhead", "layers", "d_ff", "max_classes", "context_size"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"PFNConfig.{name} must be a positive int, got {value!r}")
        if self.max_features is not None and self.max_features < 1:
            raise ValueError(f"PFNConfig.max_features must be >= 1, got {self.max_features}")
        if self.d_model % self.nhead:
            raise ValueError(
                f"PFNConfig.d_model={self.d_model} must be divisible by nhead={self.nhead}"
            )

    @classmethod
    def tiny(cls) -> PFNConfig:
        """The small variant used by tests."""
        return cls(d_model=8, nhead=2, layers=1, d_ff=16, max_features=None, context_size=64)


class PFN(SennModel):
    """Classifies a batch in one forward pass with the stored training rows as context.

    Args:
        input_shape: shape of one sample, any rank (flattened to features).
        num_classes: classes of the data (at most ``config.max_classes``).
        config: hyperparameters.
    """

    def __init__(
        self, *, input_shape: tuple[int, ...], num_classes: int, config: PFNConfig = PFNConfig()
    ) -> None:
        super().__init__()
        check_build_args(input_shape, num_classes, model="pfn")
        self.input_shape, self.num_classes, self.config = tuple(input_shape), num_classes, config
        self.num_features = math.prod(self.input_shape)
        self.max_features = config.max_features or self.num_features
        if self.num_features > self.max_features:
            raise ValueError(
                f"model 'pfn' reads at most model.params.max_features={self.max_features} "
                f"features, the data has {self.num_features}: use model=mlp (or cnn for images)"
            )
        if num_classes > config.max_classes:
            raise ValueError(
                f"model 'pfn' was fitted for at most model.params.max_classes="
                f"{config.max_classes} classes, the data has {num_classes}: use model=mlp"
            )
        self.net = PFNTransformer(
            num_features=self.max_features,
            d_model=config.d_model,
            nhead=config.nhead,
            layers=config.layers,
            d_ff=config.d_ff,
            outputs=config.max_classes,
            label_classes=config.max_classes,
        )
        self.register_buffer("context_x", torch.zeros(0, self.num_features))
        self.register_buffer("context_y", torch.zeros(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_batch(x, self.input_shape, model="pfn")
        rows = torch.cat([self.context_x.to(x.dtype), x.flatten(1)])[None]
        rows = prepare_features(rows, len(self.context_y), self.max_features)
        logits = self.net(rows, self.context_y[None])[0]
        return ModelOutput(logits=logits[:, : self.num_classes])

    def training_stages(self, epochs: int) -> list[TrainingStage]:
        """One pass that stores the context (push) and changes no weight (LR multiplier 0)."""
        return [TrainingStage("context", 1, trainable={"net.": 0.0}, push_first=True)]

    @torch.no_grad()
    def push_candidates(
        self, x: torch.Tensor, y: torch.Tensor, sample_ids: torch.Tensor
    ) -> PushCandidates:
        """Context slot ``id % context_size`` keeps the row of smallest hashed id (as
        ``distance``, so :meth:`PushCandidates.merge` across batches and ranks keeps it)."""
        slots = self.config.context_size
        key = ((sample_ids.long() * _HASH) % 2**32).double()
        slot = sample_ids.long() % slots
        best = torch.full((slots,), math.inf, dtype=torch.float64, device=x.device)
        best = best.scatter_reduce(0, slot, key, reduce="amin")
        keep = key == best[slot]
        rows = torch.cat([x.flatten(1), y.to(x.dtype)[:, None]], 1)
        vector = torch.zeros(slots, rows.shape[1], dtype=x.dtype, device=x.device)
        vector[slot[keep]] = rows[keep]
        sample = torch.full((slots,), -1, dtype=torch.long, device=x.device)
        sample[slot[keep]] = sample_ids.long()[keep]
        location = torch.zeros(slots, 2, dtype=torch.long, device=x.device)
        return PushCandidates(distance=best, vector=vector, sample=sample, location=location)

    @torch.no_grad()
    def apply_push(self, candidates: PushCandidates) -> None:
        """Store the chosen rows (in row-id order) as the context."""
        taken = candidates.sample >= 0
        order = torch.argsort(candidates.sample[taken])
        rows = candidates.vector[taken][order]
        self.set_context(rows[:, :-1], rows[:, -1].round().long())

    def set_context(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Use ``x`` ``(K, *input_shape)`` with labels ``y`` ``(K,)`` as the context."""
        self.context_x = x.reshape(len(x), -1).float().to(self.context_x.device)
        self.context_y = y.long().to(self.context_y.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("context_x", "context_y"):  # a checkpoint's context has its own size
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register_model("pfn")
def build_pfn(
    *, input_shape: tuple[int, ...], num_classes: int, tiny: bool = False, **kwargs
) -> PFN:
    """Registry builder: ``kwargs`` override :class:`PFNConfig` fields."""
    config = override_config(PFNConfig.tiny() if tiny else PFNConfig(), kwargs, model="pfn")
    return PFN(input_shape=input_shape, num_classes=num_classes, config=config)
