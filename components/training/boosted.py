"""Gradient-boosted final layers (``train.final_layer=boosted``).

Emami & Martínez-Muñoz, "Sequential Training of Neural Networks with Gradient Boosting"
(arXiv:1909.12098); reference code GAA-UAM/GBNN (``gbnn/GBNN.py``, read 2026-12-05).

The last hidden layer and the output layer of the network are trained as an additive expansion
``F_T(x) = b_0 + sum_t rho_t * g_t(h(x))``, where ``h`` is the frozen trunk:

1. ``b_0`` is the constant minimising the mean loss: for softmax cross-entropy, the log class
   priors of the training split (the output weights start at zero).
2. Each step ``t`` fits a fresh partial model ``g_t`` (``J`` hidden units with the model's own
   activation and a linear output with bias, one output per class) by least squares to the
   pseudo-residuals ``onehot(y) - softmax(F_{t-1}(x))`` of the current ensemble; only ``g_t``
   is trainable, everything earlier is frozen.
3. The step length ``rho_t`` is one Newton step on the cross-entropy along ``g_t``
   (``sum(g r) / sum(g^2 p (1 - p))``, the reference code's ``newton_step``), times the
   shrinkage ``eta`` (``train.boost.shrinkage``).
4. ``g_t`` is written into units ``[tJ, (t+1)J)`` of the network's last hidden layer, its output
   weights scaled by ``rho_t`` into the matching output columns and ``rho_t`` times its output
   bias added to the output bias. Units not yet trained have zero output weights, so after every
   step the network *is* the ensemble ``F_t``; after ``T = width / J`` steps it is an ordinary
   model of the configured width that the pipeline evaluates and explains unchanged.

Supported: ``model=mlp`` (its last ``Linear`` -> activation -> dropout -> ``Linear``). A deeper
MLP first trains as usual for ``train.epochs`` (the trunk), then its final pair is re-initialised
and boosted on the frozen trunk. Other models are refused: the CNN has no hidden layer in its
head, and the prototype models' last layer maps prototype similarities to classes (boosting it
would replace the prototype layer their explanations rest on).

Departures from the paper / reference code, and why:

* Each step is fitted with the configured optimiser (Adam by default) on mini-batches for
  ``train.boost.epochs`` epochs instead of L-BFGS on the full batch with 50% subsampling:
  mini-batch noise takes the place of the subsample, and the same step works data-parallel on
  Ray Train (gradients of ``g_t`` are averaged over ranks, the Newton sums and class counts are
  all-reduced).
* The hidden activation is the model's (ReLU), not the reference's logistic default, because
  the result must be the ordinary model.
* Binary tasks use the same two-output softmax expansion as multiclass ones (every sennflow
  classifier has ``num_classes`` logits) instead of the paper's one-output logistic loss.
* The reference code's multiclass ``model0`` is zero; we use the paper's loss-minimising
  constant (the log priors).
* The result is the complete ``T * J``-unit network (the paper keeps every step): the run's
  best checkpoint is the last step's, not an earlier step with a lower validation loss.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from components.models.base import TrainingStage
from components.models.mlp import MLP
from components.training.boost_config import BoostConfig
from components.training.checkpoint import ModelSpec, save_checkpoint
from components.training.config import TrainConfig
from components.training.errors import ModelSpecError
from components.training.fit import FitState, Report, fit
from components.training.optim import build_optimizer, build_scheduler
from components.training.steps import all_reduce, to_device, unwrap, validate

STAGE = "boost"


class BoostError(ModelSpecError):
    """``train.final_layer=boosted`` cannot apply to this model or its width."""


@dataclass
class FinalPair:
    """The two layers boosting replaces, and what feeds them.

    Attributes:
        trunk: the layers before the last hidden layer (frozen while boosting).
        hidden: the last hidden layer, ``T * J`` units.
        activation: the hidden activation.
        output: the output layer.
    """

    trunk: nn.Module
    hidden: nn.Linear
    activation: nn.Module
    output: nn.Linear

    @property
    def trunk_trains(self) -> bool:
        """Whether the trunk has weights (then it trains before boosting)."""
        return any(True for _ in self.trunk.parameters())


def final_pair(model: nn.Module) -> FinalPair:
    """The last hidden + output layer of a supported model.

    Raises:
        BoostError: for a model other than ``mlp``, naming why.
    """
    model = unwrap(model)
    if not isinstance(model, MLP):
        raise BoostError(
            f"train.final_layer=boosted supports model=mlp only (its last hidden and output "
            f"Linear layers); {type(model).__name__} has no hidden layer before its output "
            "layer, or its last layer maps prototype similarities to classes"
        )
    layers = list(model.net)  # [Flatten, (Linear, ReLU, Dropout) * L, Linear]
    return FinalPair(nn.Sequential(*layers[:-4]), layers[-4], layers[-3], layers[-1])


def boosting_steps(model: nn.Module, boost: BoostConfig) -> int:
    """``T``: the model's last hidden width over ``train.boost.units``.

    Raises:
        BoostError: if the model is not supported or its width is no multiple of the units.
    """
    width = final_pair(model).hidden.out_features
    if width % boost.units:
        raise BoostError(
            f"train.boost.units={boost.units} must divide the model's last hidden width {width} "
            f"(T = width / units boosting steps); e.g. train.boost.units={math.gcd(width, 8)}"
        )
    return width // boost.units


def log_prior_bias(class_counts: torch.Tensor) -> torch.Tensor:
    """The constant logits minimising mean cross-entropy: the log class priors.

    Raises:
        BoostError: if a class has no training sample (its prior is zero, its log -inf).
    """
    if (class_counts <= 0).any():
        missing = torch.nonzero(class_counts <= 0).flatten().tolist()
        raise BoostError(f"boosting needs every class in the training split; missing {missing}")
    return torch.log(class_counts / class_counts.sum())


def pseudo_residuals(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``onehot(y) - softmax(logits)``: minus the gradient of cross-entropy in the logits."""
    onehot = nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
    return onehot - torch.softmax(logits, dim=1)


def partial_model(in_features: int, units: int, num_classes: int) -> nn.Sequential:
    """A fresh ``g_t``: ``units`` hidden ReLU units and a linear output with bias."""
    return nn.Sequential(nn.Linear(in_features, units), nn.ReLU(), nn.Linear(units, num_classes))


def init_ensemble(model: nn.Module, train_batches, device: torch.device) -> torch.Tensor:
    """Set ``F_0``: zero output weights, output bias = log class priors; return the bias."""
    pair = final_pair(model)
    counts = torch.zeros(pair.output.out_features, dtype=torch.float64, device=device)
    for _, y, _ in train_batches.in_order():
        counts += torch.bincount(y.to(device), minlength=len(counts)).to(counts.dtype)
    bias = log_prior_bias(all_reduce(counts))
    with torch.no_grad():
        pair.output.weight.zero_()
        pair.output.bias.copy_(bias.to(pair.output.bias.dtype))
    return bias


def merge_step(model: nn.Module, part: nn.Sequential, step: int, rho: float) -> None:
    """Write ``rho * g_step`` into hidden units ``[step*J, (step+1)*J)`` of ``model``."""
    pair = final_pair(model)
    units = part[0].out_features
    rows = slice(step * units, (step + 1) * units)
    with torch.no_grad():
        pair.hidden.weight[rows] = part[0].weight
        pair.hidden.bias[rows] = part[0].bias
        pair.output.weight[:, rows] = rho * part[2].weight
        pair.output.bias += rho * part[2].bias


def check_final_layer(spec: ModelSpec, cfg: TrainConfig) -> None:
    """Fail fast (on the driver) if ``train.final_layer=boosted`` cannot apply to ``spec``.

    Raises:
        BoostError: naming the unsupported model or the units that do not divide its width.
    """
    if cfg.final_layer == "boosted":
        boosting_steps(spec.build(load_pretrained=False), cfg.boost)


def switch_off(model: nn.Module, keep_units: int) -> None:
    """Silence every hidden unit from ``keep_units`` on (the last trained go first): the
    paper's on-the-fly trade of accuracy for speed."""
    with torch.no_grad():
        final_pair(model).output.weight[:, keep_units:] = 0.0


def boosted_fit(
    model: nn.Module,
    train_batches,
    val_batches,
    *,
    cfg: TrainConfig,
    spec: ModelSpec,
    report: Report,
    prepare_model: Callable[[nn.Module], nn.Module] = lambda m: m,
    device: torch.device | str = "cpu",
    resume: dict | None = None,
    is_main: bool = True,
    on_epoch_end: Callable[[FitState], None] | None = None,
    on_step: Callable[[int, nn.Module, float], None] | None = None,
) -> FitState:
    """Train ``model`` with a gradient-boosted final layer; :func:`fit`'s contract.

    One report (and checkpoint) per boosting step, with ``stage="boost"``, ``boost_step``,
    ``boost_units`` (hidden units in use), ``boost_rho`` and ``boost_residual_mse``. A resumed
    run continues after the last checkpointed step.

    Args:
        model, train_batches, val_batches, cfg, spec, report, prepare_model, device, resume,
        is_main, on_epoch_end: as for :func:`components.training.fit.fit` (the trunk of a deeper
            MLP trains through it first).
        on_step: called after each step with its index, the trained ``g_t`` and its ``rho_t``.
    """
    device = torch.device(device)
    steps = boosting_steps(model, cfg.boost)
    planned = (cfg.epochs if final_pair(model).trunk_trains else 0) + steps
    report = _with_planned(report, planned)
    done = resume.get("boost_steps_done") if resume else None
    if done is None:
        state = _train_trunk(
            model,
            train_batches,
            val_batches,
            cfg,
            spec,
            report,
            prepare_model,
            device,
            resume,
            is_main,
            on_epoch_end,
        )
        model = unwrap(model).to(device)
        init_ensemble(model, train_batches, device)
        done = 0
    else:
        state = FitState(**resume["fit_state"])
        state.resumed_at.append(state.epoch)
        model = unwrap(model).to(device)
    for step in range(done, steps):
        start = time.perf_counter()
        part, mse = _fit_step(model, train_batches, cfg, step, device)
        rho = cfg.boost.shrinkage * _newton_step(model, part, train_batches, device)
        merge_step(model, part, step, rho)
        if on_step is not None:
            on_step(step, part, rho)
        metrics = _step_metrics(model, train_batches, val_batches, cfg, device, state, step, steps)
        metrics.update(boost_rho=rho, boost_residual_mse=mse)
        metrics["epoch_time_s"] = time.perf_counter() - start
        metrics["samples_per_s"] = (
            _samples(train_batches) * cfg.boost.epochs / metrics["epoch_time_s"]
        )
        _record(state, metrics, is_last=step == steps - 1)
        _report_step(report, metrics, model, spec, state, step + 1, is_main)
        if on_epoch_end is not None:
            on_epoch_end(state)
    return state


def _with_planned(report: Report, planned: int) -> Report:
    """``report`` with ``epochs_planned``: trunk epochs plus boosting steps, each one report
    (the progress bar's total)."""
    return lambda metrics, folder: report({**metrics, "epochs_planned": planned}, folder)


def _train_trunk(
    model,
    train_batches,
    val_batches,
    cfg,
    spec,
    report,
    prepare_model,
    device,
    resume,
    is_main,
    on_epoch_end,
) -> FitState:
    """Train a deeper MLP as usual (its trunk), none of whose checkpoints may win."""
    if not final_pair(model).trunk_trains:
        return FitState()

    def trunk_report(metrics: dict, folder: Path | None) -> None:
        report({**metrics, "checkpoint_score": math.inf}, folder)

    state = fit(
        model,
        train_batches,
        val_batches,
        cfg=cfg,
        spec=spec,
        report=trunk_report,
        prepare_model=prepare_model,
        device=device,
        resume=resume,
        is_main=is_main,
        on_epoch_end=on_epoch_end,
    )
    state.best_val_loss, state.best_epoch = math.inf, -1
    return state


def _fit_step(model, train_batches, cfg: TrainConfig, step: int, device) -> tuple[nn.Module, float]:
    """Fit a fresh ``g_step`` to the ensemble's pseudo-residuals; return it and its last MSE."""
    pair = final_pair(model)
    model.eval()  # the ensemble and trunk are frozen; no dropout on their outputs
    torch.manual_seed(cfg.seed * 100_003 + 7919 * (step + 1))  # the same g_t on every rank
    part = partial_model(pair.hidden.in_features, cfg.boost.units, pair.output.out_features)
    part = part.to(device)
    opt = build_optimizer(part, cfg, TrainingStage(STAGE, cfg.boost.epochs))
    sched = build_scheduler(opt, cfg.lr_schedule, cfg.boost.epochs)
    world = all_reduce(torch.ones(1, device=device)).item()
    mse = math.nan
    for epoch in range(cfg.boost.epochs):
        train_batches.set_epoch(step * cfg.boost.epochs + epoch)
        total, seen = 0.0, 0
        for x, y in train_batches:
            x, y = to_device(x, device), y.to(device)
            with torch.no_grad():
                features = pair.trunk(x)
                residuals = pseudo_residuals(model(x).logits, y)
            loss = nn.functional.mse_loss(part(features), residuals)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p in part.parameters():  # data-parallel: average g_t's gradients over ranks
                p.grad = all_reduce(p.grad) / world
            opt.step()
            total, seen = total + float(loss.detach()) * len(x), seen + len(x)
        sched.step()
        mse = total / seen
    return part, mse


@torch.no_grad()
def _newton_step(model, part, train_batches, device) -> float:
    """One Newton step on the mean cross-entropy along ``g``: ``sum(g r) / sum(g^2 p (1-p))``."""
    pair = final_pair(model)
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    for x, y, _ in train_batches.in_order():
        x, y = to_device(x, device), y.to(device)
        g = part(pair.trunk(x))
        logits = model(x).logits
        r, p = pseudo_residuals(logits, y), torch.softmax(logits, dim=1)
        sums += torch.stack([(g * r).sum(), (g * g * p * (1 - p)).sum()]).double()
    numerator, denominator = all_reduce(sums).tolist()
    return numerator / denominator if denominator > 0 else 0.0


def _samples(batches) -> int:
    return len(batches.x) if hasattr(batches, "x") else 0


def _step_metrics(model, train_batches, val_batches, cfg, device, state, step, steps) -> dict:
    train = validate(model, (batch[:2] for batch in train_batches.in_order()), cfg, device)
    metrics = {"train_loss": train["val_loss"], "train_accuracy": train.get("val_accuracy")}
    metrics.update(validate(model, val_batches, cfg, device))
    units = cfg.boost.units * (step + 1)
    metrics.update(
        epoch=state.epoch + 1,
        stage=STAGE,
        lr=cfg.lr,
        boost_step=step + 1,
        boost_steps=steps,
        boost_units=units,
    )
    return metrics


def _record(state: FitState, metrics: dict, *, is_last: bool) -> None:
    """The complete ensemble is the result: only the last step's checkpoint may win."""
    metrics["checkpoint_score"] = metrics["val_loss"] if is_last else math.inf
    if is_last:
        state.best_val_loss, state.best_epoch = metrics["val_loss"], metrics["epoch"]
    state.history.append(metrics)
    state.epoch += 1


def _report_step(report, metrics, model, spec, state, steps_done: int, is_main: bool) -> None:
    if not is_main:
        report(metrics, None)
        return
    train_state = {"boost_steps_done": steps_done, "fit_state": asdict(state)}
    with tempfile.TemporaryDirectory(prefix="sennflow-ckpt-") as tmp:
        report(metrics, save_checkpoint(Path(tmp), model, spec, train_state))
