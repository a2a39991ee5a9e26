"""Self-Tuning Networks: hyperparameter tuning by best-response approximation.

MacKay, Vicol, Lorraine, Duvenaud & Grosse, "Self-Tuning Networks: Bilevel Optimization of
Hyperparameters using Structured Best-Response Functions", ICLR 2019 (Alg. 1). The network
(:class:`~components.search.stn_layers.StnMLP`) takes the hyperparameters as an input, and training
alternates

* ``train_steps_per_hyper`` weight steps on training batches, each example with hyperparameters
  drawn from the perturbation distribution ``p(lambda | sigma)`` (Gaussian in the unconstrained
  space, categorical for the discrete shift), and
* one hyperparameter step on a validation batch minimising
  ``val_loss(best_response(lambda)) - tau * entropy(p(lambda | sigma))`` over the hyperparameter
  means, the learned perturbation scales and the shift logits.

The hyperparameter step evaluates the validation batch with the sampled dropout relaxed to
concrete (relaxed Bernoulli) masks, so the loss is differentiable in the rate; weight decay, input
noise and the shift never touch validation data and act only through the best response, the
discrete shift through a Gumbel-softmax relaxation of its one-hot input.

This module holds the STN MLP (``network=mlp``, on in-memory arrays); the STN of a pipeline model
(``network=model``: ``cnn``, ``proto_ae``, ``protopnet``, ..., on the pipeline's loaders, with
data-augmentation hyperparameters) is :mod:`components.search.stn_pipeline`, configured by the
same :class:`STNConfig`.

Tuned: dropout ``0.95 * sigmoid(u)``, weight decay ``exp(u)``, Gaussian input noise std
``sigmoid(u)`` and a random shift of ``{0, 1, 2}`` pixels (4-D image inputs only). The paper's STNs
are AlexNet/LSTM sized and trained with SGD; here the backbone is a one-hidden-layer MLP for a
2-core CPU, trained with Adam, and ``tau`` keeps the paper's 1e-3.

Bounds (not in the paper; see :mod:`components.search.stn_layers`): the unconstrained values are
kept in a box, giving dropout in about ``[1e-4, 0.95]``, weight decay in ``[1e-8, 1e-1]``, noise std
in ``[1e-4, 0.95]`` and perturbation stds in ``[1e-3, 1]``. Without them a large ``tau`` (the
entropy term is unbounded) sends the perturbation scales and then the samples to infinity, and a
large ``hyper_lr`` lets weight decay and noise drift to values that collapse training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from components.search.stn_layers import (
    CONTINUOUS,
    MAX_DROPOUT,
    MAX_NOISE,
    SCALE_RANGE,
    SHIFTS,
    WEIGHT_DECAY_RANGE,
    HyperSample,
    StnHyperparameters,
    StnMLP,
    random_shift,
)
from components.search.stn_pipeline import HYPERPARAMETERS, PipelineSTNSettings

NETWORKS = ("auto", "mlp", "model")


@dataclass(frozen=True)
class STNConfig:
    """Settings of an STN run (and of its fixed-hyperparameter baseline).

    Attributes:
        epochs: passes over the training set.
        lr: Adam learning rate of the network weights.
        hyper_lr: Adam learning rate of the hyperparameters and perturbation scales.
        batch_size: examples per training and validation batch.
        hidden_sizes: hidden widths of the STN MLP.
        tau: weight of the perturbation entropy term (paper: 1e-3); finite and ``>= 0``.
        warmup_epochs: epochs of weight steps only, before hyperparameters move.
        train_steps_per_hyper: weight steps per hyperparameter step (paper: 2 to 5).
        dropout: initial dropout rate, in ``[0, MAX_DROPOUT)``.
        weight_decay: initial weight-decay (L2) coefficient, in ``WEIGHT_DECAY_RANGE``.
        noise: initial Gaussian input-noise std, in ``(0, MAX_NOISE]``.
        shift: initially most likely shift (pixels, one of ``SHIFTS``).
        init_scale: initial perturbation std in the unconstrained space, in ``SCALE_RANGE``.
        temperature: concrete-dropout and Gumbel-softmax temperature of the hyper step.
        seed: seed of initialisation, batching and all sampling.
        network: what the STN trains: ``mlp`` (the STN MLP on in-memory arrays), ``model``
            (the best-response copy of the configured model, :mod:`components.search.stn_pipeline`,
            reading batches through the pipeline's loaders) or ``auto`` (``mlp`` for
            ``model=mlp`` on an array dataset, else ``model``).
        brightness: ``model`` network: initial brightness strength.
        contrast: ``model`` network: initial contrast strength.
        saturation: ``model`` network on RGB images: initial saturation strength.
        hue: ``model`` network on RGB images: initial hue strength.
    """

    epochs: int = 25
    lr: float = 3e-3
    hyper_lr: float = 3e-2
    batch_size: int = 64
    hidden_sizes: tuple[int, ...] = (64,)
    tau: float = 1e-3
    warmup_epochs: int = 1
    train_steps_per_hyper: int = 2
    dropout: float = 0.1
    weight_decay: float = 1e-4
    noise: float = 0.1
    shift: int = 1
    init_scale: float = 0.5
    temperature: float = 0.5
    seed: int = 0
    network: str = "auto"
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.05

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {list(NETWORKS)}, got {self.network!r}")
        for name, high in (("brightness", 1.0), ("contrast", 0.9), ("saturation", 0.9)):
            if not 0.0 <= getattr(self, name) <= high:
                raise ValueError(f"{name} must lie in [0, {high}], got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], got {self.hue}")
        if not 0.0 <= self.dropout < MAX_DROPOUT:
            raise ValueError(f"dropout must lie in [0, {MAX_DROPOUT}), got {self.dropout}")
        if not 0.0 < self.noise <= MAX_NOISE:
            raise ValueError(f"noise must lie in (0, {MAX_NOISE}], got {self.noise}")
        low, high = WEIGHT_DECAY_RANGE
        if not low <= self.weight_decay <= high:
            raise ValueError(f"weight_decay must lie in [{low}, {high}], got {self.weight_decay}")
        if not SCALE_RANGE[0] <= self.init_scale <= SCALE_RANGE[1]:
            raise ValueError(f"init_scale must lie in {list(SCALE_RANGE)}, got {self.init_scale}")
        if not 0.0 <= self.tau < math.inf:
            raise ValueError(f"tau (entropy weight) must be finite and >= 0, got {self.tau}")
        if self.shift not in SHIFTS:
            raise ValueError(f"shift must be one of {SHIFTS}, got {self.shift}")
        if min(self.epochs, self.batch_size, self.train_steps_per_hyper, *self.hidden_sizes) < 1:
            raise ValueError("epochs, batch_size, train_steps_per_hyper, hidden_sizes must be >= 1")

    def resolved_network(self, model_name: str, images: bool) -> str:
        """``mlp`` or ``model``: what ``network`` means for this model and dataset.

        Raises:
            ValueError: ``network=mlp`` on an image dataset (the MLP holds arrays in memory).
        """
        if self.network == "mlp" and images:
            raise ValueError(
                "search.stn.network=mlp cannot run on an image dataset: the STN MLP holds the "
                "decoded splits in memory; use network=model (the configured model's STN, "
                "reading batches through the image loaders) or auto"
            )
        if self.network == "auto":
            return "mlp" if model_name == "mlp" and not images else "model"
        return self.network

    def pipeline_settings(self) -> PipelineSTNSettings:
        """The settings of the pipeline-model STN (:func:`train_stn_model`)."""
        start = {name: getattr(self, name) for name in HYPERPARAMETERS}
        return PipelineSTNSettings(
            epochs=self.epochs,
            lr=self.lr,
            hyper_lr=self.hyper_lr,
            tau=self.tau,
            warmup_epochs=self.warmup_epochs,
            train_steps_per_hyper=self.train_steps_per_hyper,
            start=start,
            init_scale=self.init_scale,
            temperature=self.temperature,
            seed=self.seed,
        )


@dataclass
class STNResult:
    """Outcome of :func:`train_stn`.

    Attributes:
        schedule: per epoch, the hyperparameters mapped into range and the perturbation scales.
        history: per epoch, ``train_loss``, ``val_loss`` and ``val_accuracy``.
        best_val_loss: lowest end-of-epoch validation loss.
        model: the trained STN network.
        hyper: the trained hyperparameter distribution.
    """

    schedule: list[dict]
    history: list[dict]
    best_val_loss: float
    model: nn.Module
    hyper: nn.Module = field(repr=False)


def _augment(x: torch.Tensor, sample: HyperSample, gen: torch.Generator) -> torch.Tensor:
    if x.dim() == 4:
        x = random_shift(x, sample.shift, gen)
    std = sample.noise.view(-1, *([1] * (x.dim() - 1)))
    return x + std * torch.randn(x.shape, generator=gen)


def _weight_step(model, hyper, opt, x, y, gen) -> float:
    with torch.no_grad():
        sample = hyper.sample(len(x), gen)
    logits = model(_augment(x, sample, gen), sample.hnet, sample.dropout, gen)
    loss = nn.functional.cross_entropy(logits, y)
    penalty = sample.weight_decay * model.squared_norm()
    opt.zero_grad()
    (loss + penalty).backward()
    opt.step()
    return loss.item()


def _hyper_step(model, hyper, opt, x, y, gen, config: STNConfig) -> None:
    sample = hyper.sample(len(x), gen, temperature=config.temperature)
    logits = model(x, sample.hnet, sample.dropout, gen, temperature=config.temperature)
    loss = nn.functional.cross_entropy(logits, y) - config.tau * hyper.entropy()
    opt.zero_grad()
    model.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    hyper.project_()
    model.zero_grad(set_to_none=True)


@torch.no_grad()
def _evaluate(model, hyper, x, y) -> tuple[float, float]:
    logits = model(x, hyper.mode().expand(len(x), -1))
    loss = nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(1) == y).float().mean().item()


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(batch_size))


@dataclass
class _Run:
    """Mutable state of one training run."""

    model: StnMLP
    hyper: StnHyperparameters
    opt: torch.optim.Optimizer
    hyper_opt: torch.optim.Optimizer | None
    gen: torch.Generator
    step: int = 0
    val_order: list[torch.Tensor] = field(default_factory=list)


def _start(width: int, num_classes: int, config: STNConfig, tune: bool) -> _Run:
    gen = torch.Generator().manual_seed(config.seed)
    hyper = StnHyperparameters(config, tune=tune)
    model = StnMLP(width, config.hidden_sizes, num_classes, hyper.num_inputs, gen)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    hyper_opt = torch.optim.Adam(hyper.parameters(), lr=config.hyper_lr) if tune else None
    return _Run(model, hyper, opt, hyper_opt, gen)


def _train_epoch(run: _Run, data, config: STNConfig, tune_hyper: bool) -> float:
    x_train, y_train, x_val, y_val = data
    losses = []
    for idx in _batches(len(x_train), config.batch_size, run.gen):
        losses.append(
            _weight_step(run.model, run.hyper, run.opt, x_train[idx], y_train[idx], run.gen)
        )
        run.step += 1
        if tune_hyper and run.step % config.train_steps_per_hyper == 0:
            run.val_order = run.val_order or _batches(len(x_val), config.batch_size, run.gen)
            v = run.val_order.pop()
            _hyper_step(run.model, run.hyper, run.hyper_opt, x_val[v], y_val[v], run.gen, config)
    return float(np.mean(losses))


def _run(data, num_classes: int, config: STNConfig, tune: bool, report):
    run = _start(int(np.prod(data[0].shape[1:])), num_classes, config, tune)
    schedule, history = [], []
    for epoch in range(config.epochs):
        train_loss = _train_epoch(run, data, config, tune and epoch >= config.warmup_epochs)
        val_loss, val_acc = _evaluate(run.model, run.hyper, data[2], data[3])
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
            }
        )
        schedule.append({"epoch": epoch, **run.hyper.values()})
        if report is not None:
            report({**history[-1], **{k: v for k, v in schedule[-1].items() if k != "shift_probs"}})
    return run.model, run.hyper, schedule, history


def _as_tensors(x_train, y_train, x_val, y_val):
    return (
        torch.as_tensor(x_train, dtype=torch.float32),
        torch.as_tensor(y_train, dtype=torch.int64),
        torch.as_tensor(x_val, dtype=torch.float32),
        torch.as_tensor(y_val, dtype=torch.int64),
    )


def train_stn(
    x_train,
    y_train,
    x_val,
    y_val,
    *,
    num_classes: int,
    config: STNConfig = STNConfig(),
    report: Callable[[dict], None] | None = None,
) -> STNResult:
    """Train a Self-Tuning Network, tuning its hyperparameters online on the validation data.

    Args:
        x_train: ``(N, ...)`` standardised float inputs; 4-D images also get the random shift.
        y_train: ``(N,)`` integer labels.
        x_val: validation inputs, same trailing shape.
        y_val: validation labels.
        num_classes: number of classes.
        config: run settings and initial hyperparameters.
        report: called once per epoch with the history row and the current hyperparameters.

    Returns:
        The per-epoch hyperparameter schedule and history, best validation loss and the network.
    """
    data = _as_tensors(x_train, y_train, x_val, y_val)
    model, hyper, schedule, history = _run(data, num_classes, config, True, report)
    best = min(row["val_loss"] for row in history)
    return STNResult(schedule, history, best, model, hyper)


def train_fixed(
    x_train,
    y_train,
    x_val,
    y_val,
    *,
    num_classes: int,
    hyperparameters: dict,
    config: STNConfig = STNConfig(),
) -> dict:
    """Train the same network with fixed hyperparameters (the baseline an STN should beat).

    Args:
        x_train: training inputs, as for :func:`train_stn`.
        y_train: training labels.
        x_val: validation inputs.
        y_val: validation labels.
        num_classes: number of classes.
        hyperparameters: any of ``dropout``, ``weight_decay``, ``noise``, ``shift``; missing ones
            take their ``config`` value.
        config: run settings (epochs, lr, seed, ...).

    Returns:
        ``{"best_val_loss": float, "history": list[dict]}``.
    """
    unknown = set(hyperparameters) - {*CONTINUOUS, "shift"}
    if unknown:
        raise ValueError(f"unknown hyperparameters: {sorted(unknown)}")
    fields = {k: v for k, v in config.__dict__.items()}
    fixed = STNConfig(**{**fields, **hyperparameters})
    data = _as_tensors(x_train, y_train, x_val, y_val)
    _, _, _, history = _run(data, num_classes, fixed, False, None)
    return {"best_val_loss": min(row["val_loss"] for row in history), "history": history}
