"""Shared model contract: typed outputs, per-sample prototype explanations, and the registry.

Every model in ``components/models`` is a ``torch.nn.Module`` that

* is built by ``create_model(name, input_shape=..., num_classes=..., tiny=..., **kwargs)``;
* returns a :class:`ModelOutput` (or a subclass with model-specific parts) from ``forward``;
* returns named loss terms from ``loss(output, x, y)``; the key ``"total"`` is what is optimised.

Prototype models additionally subclass :class:`PrototypeModel`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn


class SoftTargetsError(ValueError):
    """A model cannot train against soft targets, or the targets do not fit the batch."""


@dataclass
class ModelOutput:
    """What every model's ``forward`` returns: at least the class logits ``(N, C)``."""

    logits: torch.Tensor


@dataclass
class PrototypeExplanation:
    """Why one sample got its logit for ``class_index``: the prototypes it resembles.

    ``contributions[j]`` is prototype ``prototype_indices[j]``'s additive share of the logit;
    over *all* prototypes, ``sum(contributions) + bias == logit`` (the decomposition is exact).
    ``prototype_indices`` holds only the top-``k`` prototypes by absolute contribution, so
    ``total_contribution`` stores the sum over all of them.
    """

    class_index: int
    logit: float
    bias: float
    prototype_indices: list[int]
    distances: list[float]
    similarities: list[float]
    contributions: list[float]
    total_contribution: float
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingStage:
    """One phase of a model's training schedule; the generic fit loop runs them in order.

    Attributes:
        name: shown in logs, metrics and the report (e.g. ``"warm_up"``, ``"last_layer"``).
        epochs: epochs of gradient steps in this stage (0: only the push, if any).
        trainable: parameter-name prefix -> learning-rate multiplier for the parameters trained
            in this stage; parameters matching no prefix are frozen. ``None`` trains all
            parameters at the base rate. A fresh optimiser is built for every stage.
        push_first: project the prototypes onto training data before this stage's epochs
            (ProtoPNet's push), through ``push_candidates`` and ``apply_push``.
    """

    name: str
    epochs: int
    trainable: Mapping[str, float] | None = None
    push_first: bool = False


@dataclass
class PushCandidates:
    """For every prototype, the closest latent patch of a training sample of its class.

    Attributes:
        distance: ``(P,)`` squared distance to the candidate (``inf`` where none was seen).
        vector: ``(P, D)`` the candidate latent patch.
        sample: ``(P,)`` int64 id of the training sample it came from (``-1`` where none).
        location: ``(P, 2)`` int64 (row, col) of the patch in the latent grid.
    """

    distance: torch.Tensor
    vector: torch.Tensor
    sample: torch.Tensor
    location: torch.Tensor

    def merge(self, other: PushCandidates) -> PushCandidates:
        """Keep, per prototype, the closer of the two candidates."""
        take = other.distance < self.distance
        return PushCandidates(
            distance=torch.where(take, other.distance, self.distance),
            vector=torch.where(take[:, None], other.vector, self.vector),
            sample=torch.where(take, other.sample, self.sample),
            location=torch.where(take[:, None], other.location, self.location),
        )


class SennModel(nn.Module):
    """Base class: a model with a typed forward and named loss terms.

    ``supervised = False`` marks a clustering model: its logits are cluster scores, its loss
    ignores labels, and the pipeline evaluates it with clustering metrics.
    """

    supervised: bool = True
    #: Why this model cannot train against soft targets (``None``: it can). A model whose
    #: classification loss is not a cross-entropy through :meth:`cross_entropy` sets it.
    soft_targets_refusal: str | None = None
    _soft_targets: torch.Tensor | None = None
    _sample_weights: torch.Tensor | None = None

    def embedding(self, x: torch.Tensor) -> torch.Tensor | None:
        """The model's latent representation of a batch, flattened to ``(N, D)``, or ``None``
        when it has no encoder (the default: e.g. ``mlp``).

        Federated prototype averaging (``components.federated.client``) averages class means in
        this space. Models with an encoder (autoencoder latent, conv trunk, prototype latent
        grid) override it.
        """
        return None

    def training_stages(self, epochs: int) -> list[TrainingStage]:
        """The training schedule for a run of ``epochs`` epochs; default: one plain stage."""
        return [TrainingStage("train", epochs)]

    def start_stage(self, stage: TrainingStage) -> None:
        """Called by the fit loop before a stage's first epoch (and again when a run resumes
        inside it), e.g. to narrow S-KAN's activation spaces; default: nothing. It must be
        idempotent."""

    def loss(
        self, output: ModelOutput, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Named loss terms; ``"total"`` is the weighted sum that is optimised."""
        ce = self.cross_entropy(output.logits, y)
        return {"total": ce, "ce": ce}

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean classification cross-entropy every model's loss uses for its CE term(s).

        Against the hard labels ``y`` (exactly ``F.cross_entropy(logits, y)``), or, inside
        :meth:`soft_targets`, against the batch's target distributions ``q``:
        ``mean_i sum_c -q_ic log softmax(logits_i)_c``. ``logits`` may carry extra dimensions
        between the batch and the classes (``(N, S, C)``: samples, branches); every row of
        sample ``i`` shares ``y_i`` and ``q_i``, and the mean runs over all rows.
        Label-indexed terms (cluster/separation costs, class priors) keep using ``y``.
        Inside :meth:`weighted_samples` sample ``i``'s cross-entropy is multiplied by ``w_i``
        before the mean.
        """
        targets, weights = self._soft_targets, self._sample_weights
        if logits.dim() > 2:
            repeats = logits[0, ..., 0].numel()
            logits = logits.flatten(0, -2)
            y = y.repeat_interleave(repeats)
            targets = None if targets is None else targets.repeat_interleave(repeats, dim=0)
            weights = None if weights is None else weights.repeat_interleave(repeats)
        if targets is not None and targets.shape != logits.shape:
            raise SoftTargetsError(
                f"soft targets of shape {tuple(targets.shape)} do not fit logits of shape "
                f"{tuple(logits.shape)}"
            )
        target = y if targets is None else targets.to(logits.dtype)
        if weights is None:
            return nn.functional.cross_entropy(logits, target)
        per_sample = nn.functional.cross_entropy(logits, target, reduction="none")
        return (per_sample * weights.to(per_sample.dtype)).mean()

    @contextlib.contextmanager
    def weighted_samples(self, weights: torch.Tensor) -> Iterator[None]:
        """Within the block, :meth:`cross_entropy` weighs sample ``i`` by ``weights[i]``
        ``(N,)`` (no gradient): X-NeSyL's SHAP-Backprop (:mod:`components.training.xnesyl`)."""
        previous, self._sample_weights = self._sample_weights, weights.detach()
        try:
            yield
        finally:
            self._sample_weights = previous

    @contextlib.contextmanager
    def soft_targets(self, targets: torch.Tensor) -> Iterator[None]:
        """Within the block, :meth:`cross_entropy` trains against ``targets`` ``(N, C)``.

        ``targets[i]`` is sample ``i``'s distribution over the classes (rows sum to 1); it
        carries no gradient. Use it around the ``loss`` call of one batch.

        Raises:
            SoftTargetsError: the model has no cross-entropy term (unsupervised, margin loss),
                or ``targets`` is not a ``(N, num_classes)`` float tensor.
        """
        self.check_soft_targets()
        if targets.dim() != 2 or not targets.is_floating_point():
            raise SoftTargetsError(
                f"soft targets must be a float (N, num_classes) tensor, got {targets.dtype} "
                f"of shape {tuple(targets.shape)}"
            )
        previous, self._soft_targets = self._soft_targets, targets.detach()
        try:
            yield
        finally:
            self._soft_targets = previous

    def check_soft_targets(self) -> None:
        """Raise :class:`SoftTargetsError` if this model cannot train against soft targets."""
        reason = self.soft_targets_refusal
        if reason is None and not self.supervised:
            reason = "it is unsupervised: its loss ignores the labels"
        if reason is not None:
            raise SoftTargetsError(
                f"model {type(self).__name__} cannot train against soft targets "
                f"(self-distillation): {reason}"
            )


class PrototypeModel(SennModel):
    """A model whose logits are computed from (dis)similarities to learned prototypes."""

    @property
    def prototypes(self) -> torch.Tensor:
        """The prototype vectors, shape ``(num_prototypes, ...)``."""
        raise NotImplementedError

    def explain(self, x: torch.Tensor, top_k: int = 3) -> list[PrototypeExplanation]:
        """One explanation per sample in ``x``, for the predicted class."""
        raise NotImplementedError

    def explained_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits that :meth:`explain` decomposes (the forward's, unless a model samples)."""
        return self(x).logits

    def activation_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Similarity of every prototype to every latent patch, ``(N, P, h, w)`` (part models)."""
        raise NotImplementedError(f"{type(self).__name__} has no spatial prototypes")

    def push_candidates(
        self, x: torch.Tensor, y: torch.Tensor, sample_ids: torch.Tensor
    ) -> PushCandidates:
        """Per prototype, the closest latent patch among this batch's samples of its class."""
        raise NotImplementedError(f"{type(self).__name__} does not push prototypes")

    def apply_push(self, best: PushCandidates) -> None:
        """Replace each prototype by its candidate patch and remember where it came from."""
        raise NotImplementedError(f"{type(self).__name__} does not push prototypes")


ConfigT = TypeVar("ConfigT")


def override_config(config: ConfigT, overrides: Mapping[str, Any], *, model: str) -> ConfigT:
    """Return ``config`` (a dataclass instance) with ``overrides`` applied.

    Raises:
        TypeError: if an override is not a field of the config; the message names the model,
            the unknown keys and the valid ones.
    """
    valid = [f.name for f in dataclasses.fields(config)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(
            f"model {model!r} got unknown keyword argument(s) {unknown}; valid: {valid}"
        )
    return dataclasses.replace(config, **overrides)


def positive_ints(config: object, name: str, *, allow_empty: bool = False) -> None:
    """Store ``config.name`` as a tuple (Hydra hands lists over) and require positive ints."""
    values = tuple(getattr(config, name))
    object.__setattr__(config, name, values)
    if (not values and not allow_empty) or any(int(v) < 1 for v in values):
        owner = type(config).__name__
        raise ValueError(f"{owner}.{name} must be positive ints, got {values}")


def probability(config: object, name: str) -> None:
    """Require ``config.name`` in ``[0, 1)`` (dropout rates)."""
    value = getattr(config, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{type(config).__name__}.{name} must be in [0, 1), got {value}")


def check_build_args(input_shape: tuple[int, ...], num_classes: int, *, model: str) -> None:
    """Raise a clear error if the sample shape or class count cannot describe a dataset."""
    if not input_shape or any(int(n) != n or n < 1 for n in input_shape):
        raise ValueError(f"model {model!r}: input_shape must be positive ints, got {input_shape}")
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"model {model!r}: num_classes must be an int >= 2, got {num_classes}")


def check_batch(x: torch.Tensor, input_shape: tuple[int, ...], *, model: str) -> None:
    """Raise a clear error if ``x`` is not a float batch of shape ``(N, *input_shape)``."""
    if not x.is_floating_point():
        raise TypeError(f"model {model!r} expects a floating-point batch, got dtype {x.dtype}")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"model {model!r} was built for input shape (N, {', '.join(map(str, input_shape))}) "
            f"but got a batch of shape {tuple(x.shape)}"
        )


_REGISTRY: dict[str, Callable[..., SennModel]] = {}


def register_model(name: str) -> Callable[[Callable[..., SennModel]], Callable[..., SennModel]]:
    """Decorator adding a model builder to the registry under ``name``."""

    def decorate(builder: Callable[..., SennModel]) -> Callable[..., SennModel]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def create_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    tiny: bool = False,
    **kwargs,
) -> SennModel:
    """Build a registered model.

    Args:
        name: registry name, e.g. ``"proto_ae"``.
        input_shape: shape of one sample without the batch dimension, ``(C, H, W)`` or ``(D,)``.
        num_classes: number of output classes.
        tiny: build the small variant used by tests.
        **kwargs: model-specific keyword arguments (typed on each model's config dataclass).

    Raises:
        KeyError: if ``name`` is not registered (the message lists the registered names).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name](
        input_shape=tuple(input_shape), num_classes=num_classes, tiny=tiny, **kwargs
    )
