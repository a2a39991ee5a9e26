"""Self-Tuning Networks for the pipeline's own models, data augmentation included.

MacKay, Vicol, Lorraine, Duvenaud & Grosse, "Self-Tuning Networks", ICLR 2019, Alg. 1, applied
to the best-response copy of a pipeline model (:func:`components.search.stn_model.best_response`:
``model=cnn``, the trunk and head of ``proto_ae`` / ``protopnet``, ...), trained with the model's
own loss (``loss(...)["total"]``) on batches from the pipeline's loaders (arrays or decoded image
folders). Alternating, as in the paper:

* ``train_steps_per_hyper`` weight steps, each example with hyperparameters drawn from the
  perturbation distribution ``p(lambda | sigma)``; the batch is augmented with the drawn
  strengths and the penalty is ``weight_decay * sum ||theta||^2`` over all parameters;
* one hyperparameter step on a validation batch minimising
  ``val_loss(best_response(lambda)) - tau * entropy`` over the means and perturbation scales.

Tuned (the paper's CNN experiments tune the same kinds: dropout rates, and the augmentation
hyperparameters hue, saturation, brightness, contrast and crop/shift): dropout (where the model
has a dropout layer), weight decay, brightness, contrast, shift, and for RGB images saturation
and hue (:mod:`components.training.replay` defines each). Augmentation never touches validation
data, so, as in the paper, its hyperparameters get their gradient only through the best
response; dropout through a concrete relaxation on the validation batch.

Departures: Adam instead of the paper's SGD; the shift is a continuous strength in pixels
(rounded per example) rather than the paper's discrete cutout/crop settings; all
hyperparameters live in boxes (see :data:`HYPERPARAMETERS`), for the robustness reasons given in
:mod:`components.search.stn_layers`. Training stages (ProtoPNet's warm-up, push, last layer) are
not run: the STN trains every parameter jointly; its schedule is what the retrain replays
through the fit loop, stages included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from components.search.stn_layers import LOG_SCALE_RANGE, PROB_EPS
from components.search.stn_model import HyperContext, best_response, has_dropout
from components.training.replay import augment

# name -> (transform, low, high): "sigmoid" maps u to high * sigmoid(u) with u boxed so the
# value lies in about [low, high]; "log" maps u to exp(u) in [low, high].
HYPERPARAMETERS: dict[str, tuple[str, float, float]] = {
    "dropout": ("sigmoid", PROB_EPS, 0.95),
    "weight_decay": ("log", 1e-8, 1e-1),
    "brightness": ("sigmoid", PROB_EPS, 1.0),
    "contrast": ("sigmoid", PROB_EPS, 0.9),
    "shift": ("sigmoid", PROB_EPS, 4.0),
    "saturation": ("sigmoid", PROB_EPS, 0.9),
    "hue": ("sigmoid", PROB_EPS, 0.5),
}
GREY = ("weight_decay", "brightness", "contrast", "shift")
COLOUR = ("saturation", "hue")


def tuned_names(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """The hyperparameters an STN of ``model`` tunes on this input."""
    names = (("dropout",) if has_dropout(model) else ()) + GREY
    if len(input_shape) == 3 and input_shape[0] == 3:
        names += COLOUR
    if len(input_shape) != 3:  # no image: no shift
        names = tuple(n for n in names if n != "shift")
    return names


def _to_unconstrained(name: str, value: float) -> float:
    kind, low, high = HYPERPARAMETERS[name]
    value = min(max(value, low), high * (1 - PROB_EPS) if kind == "sigmoid" else high)
    if kind == "log":
        return math.log(value)
    p = value / high
    return math.log(p) - math.log1p(-p)


class PipelineHyperparameters(nn.Module):
    """Perturbation distribution over named, boxed, continuous hyperparameters.

    Args:
        names: which of :data:`HYPERPARAMETERS` to tune, in order.
        start: initial value of each.
        init_scale: initial perturbation std (unconstrained units).
        tune: if False the values are fixed: no perturbation and no gradients.
    """

    def __init__(
        self, names: tuple[str, ...], start: dict, init_scale: float, tune: bool = True
    ) -> None:
        super().__init__()
        self.names, self.tune = tuple(names), tune
        mean = torch.tensor([_to_unconstrained(n, float(start[n])) for n in self.names])
        low = [_to_unconstrained(n, HYPERPARAMETERS[n][1]) for n in self.names]
        high = [_to_unconstrained(n, HYPERPARAMETERS[n][2]) for n in self.names]
        self.register_buffer("low", torch.tensor(low))
        self.register_buffer("high", torch.tensor(high))
        self.register_buffer("origin", mean.clone())
        scale = math.log(init_scale) if tune else -math.inf
        self.mean = nn.Parameter(mean, requires_grad=tune)
        self.log_scale = nn.Parameter(torch.full((len(self.names),), scale), requires_grad=tune)

    def _clamp(self, u: torch.Tensor) -> torch.Tensor:
        return torch.clamp(u, self.low, self.high)

    def to_range(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map ``(..., k)`` unconstrained values to each hyperparameter's range."""
        u = self._clamp(u)
        out = {}
        for i, name in enumerate(self.names):
            kind, _, high = HYPERPARAMETERS[name]
            out[name] = u[..., i].exp() if kind == "log" else high * torch.sigmoid(u[..., i])
        return out

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Per-example draws: the best-response input ``(n, k)`` and the values by name."""
        u = self.mean.expand(n, -1)
        if self.tune:
            scale = self.log_scale.clamp(*LOG_SCALE_RANGE).exp()
            u = u + torch.randn((n, len(self.names)), generator=gen) * scale
        u = self._clamp(u)
        return u - self.origin, self.to_range(u)

    def mode(self) -> torch.Tensor:
        """``(1, k)`` best-response input at the distribution's centre."""
        return (self._clamp(self.mean) - self.origin).unsqueeze(0)

    @torch.no_grad()
    def project_(self) -> None:
        """Keep the means and log-scales in their boxes (after each hyperparameter step)."""
        if self.tune:
            self.mean.copy_(self._clamp(self.mean))
            self.log_scale.copy_(self.log_scale.clamp(*LOG_SCALE_RANGE))

    def entropy(self) -> torch.Tensor:
        """Entropy of the Gaussian perturbations, up to a constant."""
        return self.log_scale.clamp(*LOG_SCALE_RANGE).sum() if self.tune else torch.zeros(())

    def values(self) -> dict:
        """The current hyperparameters in range, and the perturbation scales."""
        with torch.no_grad():
            out = {k: float(v) for k, v in self.to_range(self.mean.double()).items()}
            if self.tune:
                scales = self.log_scale.clamp(*LOG_SCALE_RANGE).exp().tolist()
                out |= {f"{n}_scale": s for n, s in zip(self.names, scales, strict=True)}
        return out


@dataclass(frozen=True)
class PipelineSTNSettings:
    """Settings of :func:`train_stn_model` (taken from :class:`~components.search.stn.STNConfig`).

    Attributes:
        epochs: passes over the training batches.
        lr: Adam learning rate of the weights.
        hyper_lr: Adam learning rate of the hyperparameter means and scales.
        tau: entropy weight (paper: 1e-3).
        warmup_epochs: weight-only epochs before the hyperparameters move.
        train_steps_per_hyper: weight steps per hyperparameter step.
        start: initial value of every hyperparameter in :data:`HYPERPARAMETERS`.
        init_scale: initial perturbation std.
        temperature: concrete-dropout temperature of the hyperparameter step.
        seed: seeds the response weights, the draws and the augmentation.
    """

    epochs: int
    lr: float
    hyper_lr: float
    tau: float
    warmup_epochs: int
    train_steps_per_hyper: int
    start: dict
    init_scale: float = 0.5
    temperature: float = 0.5
    seed: int = 0


@dataclass
class PipelineSTNResult:
    """Outcome of :func:`train_stn_model`: the per-epoch schedule and history, the best
    validation loss, and the trained best-response network with its hyperparameters."""

    schedule: list[dict]
    history: list[dict]
    best_val_loss: float
    model: nn.Module
    hyper: PipelineHyperparameters = field(repr=False)


def _penalty(model: nn.Module) -> torch.Tensor:
    return sum((p.pow(2).sum() for p in model.parameters()), torch.zeros(()))


def _weight_step(model, ctx: HyperContext, hyper, opt, x, y, gen) -> float:
    with torch.no_grad():
        hnet, values = hyper.sample(len(x), gen)
    x = augment(x, {k: v for k, v in values.items() if k not in ("dropout", "weight_decay")}, gen)
    ctx.hyper, ctx.dropout, ctx.temperature = hnet, values.get("dropout"), None
    model.train()
    loss = model.loss(model(x), x, y)["total"]
    opt.zero_grad()
    (loss + values["weight_decay"].mean() * _penalty(model)).backward()
    opt.step()
    return float(loss.detach())


def _hyper_step(model, ctx: HyperContext, hyper, opt, x, y, settings) -> None:
    hnet, values = hyper.sample(len(x), ctx.generator)
    ctx.hyper, ctx.dropout, ctx.temperature = hnet, values.get("dropout"), settings.temperature
    model.eval()  # batch-norm statistics stay the training data's; dropout is relaxed anyway
    loss = model.loss(model(x), x, y)["total"] - settings.tau * hyper.entropy()
    opt.zero_grad()
    model.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    hyper.project_()
    model.zero_grad(set_to_none=True)
    ctx.temperature = None


@torch.no_grad()
def evaluate(model, ctx: HyperContext, hyper, batches: Iterable) -> tuple[float, float]:
    """Mean total loss and accuracy over ``batches`` at the distribution's centre, no dropout."""
    model.eval()
    loss_sum = correct = n = 0.0
    for x, y in batches:
        ctx.hyper, ctx.dropout, ctx.temperature = hyper.mode().expand(len(x), -1), None, None
        out = model(x)
        loss_sum += float(model.loss(out, x, y)["total"]) * len(x)
        correct += float((out.logits.argmax(1) == y).sum())
        n += len(x)
    return loss_sum / n, correct / n


class _Cycle:
    """Validation batches for hyperparameter steps, restarting the iterable when spent."""

    def __init__(self, batches: Iterable) -> None:
        self.batches, self.it = batches, iter(batches)

    def next(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.batches)
            return next(self.it)


def train_stn_model(
    model: nn.Module,
    train_batches,
    val_batches,
    *,
    input_shape: tuple[int, ...],
    settings: PipelineSTNSettings,
    tune: bool = True,
    report: Callable[[dict], None] | None = None,
) -> PipelineSTNResult:
    """Train the best-response copy of ``model`` as a Self-Tuning Network (Alg. 1).

    Args:
        model: the pipeline model (left untouched; a best-response copy is trained).
        train_batches: re-iterable ``(x, y)`` training batches (``set_epoch`` is called if any).
        val_batches: re-iterable validation batches.
        input_shape: the model's input shape (which hyperparameters apply).
        settings: run settings and starting values.
        tune: False trains the same network at fixed hyperparameters (the baseline).
        report: called once per epoch with the history row and the current hyperparameters.
    """
    gen = torch.Generator().manual_seed(settings.seed)
    names = tuned_names(model, input_shape)
    stn, ctx = best_response(model, len(names), gen)
    ctx.generator = gen
    hyper = PipelineHyperparameters(names, settings.start, settings.init_scale, tune=tune)
    opt = torch.optim.Adam(stn.parameters(), lr=settings.lr)
    hyper_opt = torch.optim.Adam(hyper.parameters(), lr=settings.hyper_lr) if tune else None
    val_cycle, step = _Cycle(val_batches), 0
    schedule, history = [], []
    for epoch in range(settings.epochs):
        if hasattr(train_batches, "set_epoch"):
            train_batches.set_epoch(epoch)
        schedule.append({"epoch": epoch, **hyper.values()})
        losses = []
        for x, y in train_batches:
            losses.append(_weight_step(stn, ctx, hyper, opt, x, y, gen))
            step += 1
            moving = tune and epoch >= settings.warmup_epochs
            if moving and step % settings.train_steps_per_hyper == 0:
                _hyper_step(stn, ctx, hyper, hyper_opt, *val_cycle.next(), settings)
        val_loss, val_acc = evaluate(stn, ctx, hyper, val_batches)
        row = {"epoch": epoch, "train_loss": sum(losses) / len(losses), "val_loss": val_loss}
        history.append({**row, "val_accuracy": val_acc})
        if report is not None:
            report({**history[-1], **{k: v for k, v in schedule[-1].items() if k != "epoch"}})
    best = min(row["val_loss"] for row in history)
    return PipelineSTNResult(schedule, history, best, stn, hyper)
