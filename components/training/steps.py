"""One training epoch and one validation pass (shared by every stage)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

import torch
from torch import nn

from components.training.config import TrainConfig
from components.training.mixup import BatchMix

Targets = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def unwrap(model: nn.Module) -> nn.Module:
    """The user model inside a DDP/FSDP wrapper."""
    return getattr(model, "module", model)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked for; a no-op elsewhere."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device`` (asynchronously from pinned memory); image batches on a GPU in
    channels-last layout, as the model is (see :func:`components.training.fit.fit`)."""
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def all_reduce(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over data-parallel ranks (identity in a single process)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


def train_epoch(
    model,
    batches,
    opt,
    cfg: TrainConfig,
    device: torch.device,
    targets: Targets | None = None,
    weights: Callable | None = None,
    mix: BatchMix | None = None,
    class_weights: torch.Tensor | None = None,
) -> dict:
    """One pass over ``batches``; returns the mean of every named loss term and samples/s.

    Gradients are cleared on the whole model (not only the optimiser's parameters) because a
    stage may train a subset; the frozen rest keeps ``requires_grad`` so DDP's reducer is unchanged.
    ``targets(x, y)``, when given, is each batch's soft target distribution ``(N, C)``: the
    model's cross-entropy trains against it (self-distillation from a frozen teacher). Batches
    that carry sample ids (``(x, y, ids)``) pass them on, ``targets(x, y, ids)``, and a
    ``targets`` with a ``record(ids, probs)`` method gets the batch's softmax after its step
    (PS-KD's per-sample table: :mod:`components.training.pskd`). ``weights(model, x, y, ids)``,
    when given, is each batch's per-sample cross-entropy weights ``(N,)`` (X-NeSyL's
    SHAP-Backprop: :mod:`components.training.xnesyl`); it needs batches with sample ids.
    ``mix``, when given, replaces each batch by its MixUp / label-smoothed version and trains
    against the mixed targets (:mod:`components.training.mixup`). ``class_weights`` ``(C,)``,
    when given, weighs each sample's cross-entropy by its class's weight
    (:mod:`components.training.class_weights`), times its ``weights`` if any.
    """
    model.train()
    freeze_untrained_norms(model, opt)
    sums: dict[str, float] = {}
    seen = 0
    start = time.perf_counter()
    for x, y, *ids in batches:
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        x, soft = _mixed(model, mix, targets, x, y, ids)
        with (
            autocast(device, cfg.precision),
            soft,
            _weighted(model, weights, class_weights, x, y, ids),
        ):
            output = model(x)
            terms = unwrap(model).loss(output, x, y)
        model.zero_grad(set_to_none=True)
        terms["total"].backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ids and hasattr(targets, "record"):
            targets.record(ids[0], output.logits.detach().float().softmax(dim=1))
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(x)
        seen += len(x)
    elapsed = time.perf_counter() - start
    out = {f"train_{name}": total / seen for name, total in sums.items()}
    out["train_loss"] = out.pop("train_total")
    out["samples_per_s"] = seen / max(elapsed, 1e-9)
    out.update(_placement(model, x, device, cfg))
    return out


def _mixed(model, mix: BatchMix | None, targets: Targets | None, x, y, ids: list):
    """The batch input after ``mix`` (if any) and the soft-target context to train in."""
    if mix is None:
        return x, _soft_targets(model, targets, x, y, ids)
    x, q = mix(x, y, None if targets is None else targets(x, y, *ids))
    return x, unwrap(model).soft_targets(q)


def _soft_targets(model, targets: Targets | None, x: torch.Tensor, y: torch.Tensor, ids: list):
    if targets is None:
        return contextlib.nullcontext()
    return unwrap(model).soft_targets(targets(x, y, *ids))


def _weighted(model, weights: Callable | None, class_weights, x, y: torch.Tensor, ids: list):
    """The per-sample weighting of this batch's cross-entropy: ``weights``' (X-NeSyL), its
    class's weight, their product, or none."""
    per_sample = None if weights is None else weights(unwrap(model), x, y, ids[0])
    if class_weights is not None:
        by_class = class_weights[y]
        per_sample = by_class if per_sample is None else per_sample * by_class
    if per_sample is None:
        return contextlib.nullcontext()
    return unwrap(model).weighted_samples(per_sample)


def freeze_untrained_norms(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Put the BatchNorm layers whose parameters ``opt`` does not train in eval mode.

    A stage freezes parameters by leaving them out of the optimiser, but BatchNorm's running
    statistics move in train mode regardless. A frozen pretrained trunk (ProtoPNet's warm-up)
    must keep its ImageNet statistics, and a trunk frozen after a push (the last-layer stage)
    must keep computing the very latent patches the prototypes were copied from. A BatchNorm
    without affine parameters says nothing about its stage and keeps training.
    """
    trained = {id(p) for group in opt.param_groups for p in group["params"]}
    for module in model.modules():
        params = list(module.parameters()) if _is_batch_norm(module) else []
        if params and not any(id(p) in trained for p in params):
            module.eval()


def _is_batch_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


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
def validate(model, batches: Iterable, cfg: TrainConfig, device: torch.device) -> dict:
    """Mean total loss and accuracy over ``batches``, summed across ranks."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n
    for x, y in batches:
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        with autocast(device, cfg.precision):
            out = model(x)
            loss = unwrap(model).loss(out, x, y)["total"]
        sums += torch.tensor(
            [float(loss) * len(x), float((out.logits.argmax(1) == y).sum()), len(x)],
            dtype=torch.float64,
            device=device,
        )
    loss_sum, correct, n = all_reduce(sums).tolist()
    metrics = {"val_loss": loss_sum / n}
    if getattr(unwrap(model), "supervised", True):  # cluster ids are not class labels
        metrics["val_accuracy"] = correct / n
    return metrics
