"""The pure fit loop: epochs, optimiser, LR schedule, early stopping, per-epoch checkpoints.

It knows nothing about Ray: ``report`` and ``prepare_model`` are injected (Ray Train passes
``ray.train.report`` and ``ray.train.torch.prepare_model``; tests pass a list's ``append``), the
habit of Ray's own examples. Validation sums are all-reduced when ``torch.distributed`` is
initialised, so every rank takes the same early-stopping decision.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from components.training.checkpoint import ModelSpec, save_checkpoint
from components.training.config import TrainConfig

Report = Callable[[dict, Path | None], None]


@dataclass
class FitState:
    """Progress that a checkpoint carries so a run can resume exactly where it stopped."""

    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf
    best_epoch: int = -1
    stale_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)  # epochs at which the run was resumed
    stopped_early: bool = False


def unwrap(model: nn.Module) -> nn.Module:
    """The user model inside a DDP/FSDP wrapper."""
    return getattr(model, "module", model)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """The LR multiplier at ``epoch`` in closed form.

    Closed form (not the recursive ``CosineAnnealingLR``) so a run resumed with a different
    ``epochs`` follows the new schedule exactly from where it is.
    """
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, cfg.epochs) / cfg.epochs))
    if cfg.lr_schedule == "step":
        milestones = (cfg.epochs // 2, (3 * cfg.epochs) // 4)
        return 0.1 ** sum(epoch >= m for m in milestones if m > 0)
    return 1.0


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """The per-epoch LR schedule named by ``cfg.lr_schedule``."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(cfg, epoch))


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _all_reduce(values: torch.Tensor) -> torch.Tensor:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


def train_epoch(model, batches, opt, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """One pass over ``batches``; returns the mean of every named loss term and samples/s."""
    model.train()
    sums: dict[str, float] = {}
    seen = 0
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, cfg.precision):
            terms = unwrap(model).loss(model(x), x, y)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(x)
        seen += len(x)
    elapsed = time.perf_counter() - start
    out = {f"train_{name}": total / seen for name, total in sums.items()}
    out["train_loss"] = out.pop("train_total")
    out["samples_per_s"] = seen / max(elapsed, 1e-9)
    out.update(_placement(model, x, device, cfg))
    return out


def _placement(model, x: torch.Tensor, device: torch.device, cfg: TrainConfig) -> dict:
    """Where the work really ran: the report and the GPU check read these."""
    info = {
        "model_device": str(next(model.parameters()).device),
        "batch_device": str(x.device),
        "autocast": "bfloat16" if device.type == "cuda" and cfg.precision == "bf16" else "none",
    }
    if device.type == "cuda":
        info["gpu_max_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return info


@torch.no_grad()
def validate(model, batches: Iterable, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Mean total loss and accuracy over ``batches``, summed across ranks."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with _autocast(device, cfg.precision):
            out = model(x)
            loss = unwrap(model).loss(out, x, y)["total"]
        sums += torch.tensor(
            [float(loss) * len(x), float((out.logits.argmax(1) == y).sum()), len(x)],
            dtype=torch.float64,
            device=device,
        )
    loss_sum, correct, n = _all_reduce(sums).tolist()
    return {"val_loss": loss_sum / n, "val_accuracy": correct / n}


def fit(
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
) -> FitState:
    """Train ``model`` until ``cfg.epochs`` or early stopping; report a checkpoint every epoch.

    Args:
        model: the (unwrapped) model; its weights must already hold the resume state, if any.
        train_batches: re-iterable batches with ``set_epoch(epoch)`` (e.g. :class:`ShardBatches`).
        val_batches: re-iterable validation batches.
        cfg: training configuration.
        spec: how to rebuild the model, saved with every checkpoint.
        report: called once per epoch with the metrics and a checkpoint folder (``None`` on
            non-main ranks); the folder is deleted after the call returns.
        prepare_model: wraps/moves the model (DDP on Ray); identity by default.
        device: where batches go.
        resume: a checkpoint's training state (``load_state``) to continue from.
        is_main: whether this rank writes checkpoints.
        on_epoch_end: hook after each epoch's report (fault injection in tests).
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = prepare_model(model)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    state = FitState()
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        state = FitState(**resume["fit_state"])
        state.resumed_at.append(state.epoch)
    while state.epoch < cfg.epochs:
        epoch = state.epoch
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout noise reproducible on resume
        train_batches.set_epoch(epoch)
        start = time.perf_counter()
        metrics = train_epoch(model, train_batches, opt, cfg, device)
        metrics.update(validate(model, val_batches, cfg, device))
        metrics.update(epoch=epoch + 1, lr=opt.param_groups[0]["lr"])
        metrics["epoch_time_s"] = time.perf_counter() - start
        sched.step()
        _update_early_stopping(state, metrics, cfg)
        state.history.append(metrics)
        state.epoch = epoch + 1
        state.stopped_early = 0 < cfg.early_stopping_patience <= state.stale_epochs
        _report_epoch(report, metrics, model, spec, opt, sched, state, is_main)
        if on_epoch_end is not None:
            on_epoch_end(state)
        if state.stopped_early:
            break
    return state


def _update_early_stopping(state: FitState, metrics: dict, cfg: TrainConfig) -> None:
    if metrics["val_loss"] < state.best_val_loss - cfg.min_delta:
        state.best_val_loss = metrics["val_loss"]
        state.best_epoch = metrics["epoch"]
        state.stale_epochs = 0
    else:
        state.stale_epochs += 1


def _report_epoch(report, metrics, model, spec, opt, sched, state: FitState, is_main: bool) -> None:
    if not is_main:
        report(metrics, None)
        return
    train_state = {
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "fit_state": asdict(state),
    }
    with tempfile.TemporaryDirectory(prefix="sennflow-ckpt-") as tmp:
        folder = save_checkpoint(Path(tmp), unwrap(model), spec, train_state)
        report(metrics, folder)
