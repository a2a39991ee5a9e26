"""The pure fit loop: staged training, LR schedules, early stopping, per-epoch checkpoints.

It knows nothing about Ray: ``report`` and ``prepare_model`` are injected (Ray Train passes
``ray.train.report`` and ``ray.train.torch.prepare_model``; tests pass a list's ``append``), the
habit of Ray's own examples. Validation sums are all-reduced when ``torch.distributed`` is
initialised, so every rank takes the same early-stopping decision.

The model declares its schedule (``training_stages``: e.g. ProtoPNet's warm-up, joint, push,
last layer); the loop runs the stages in order with a fresh optimiser each, and knows no model.
Early stopping ends a stage (and the run, in the last stage). The best checkpoint is chosen by
validation loss among the epochs of the last stage, which is what the model ends up as.
An epoch whose loss is NaN or infinite stops the fit with :class:`DivergedError` before it is
reported, so the last reported checkpoint is the last finite one.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from components.models.base import TrainingStage
from components.training.checkpoint import ModelSpec, save_checkpoint
from components.training.class_weights import shard_class_weights
from components.training.config import TrainConfig
from components.training.mixup import batch_mix
from components.training.optim import build_optimizer, build_scheduler
from components.training.pskd import PSKDTargets, pskd_targets
from components.training.push import push_prototypes
from components.training.replay import apply_epoch, replayed_values
from components.training.steps import Targets, all_reduce, train_epoch, unwrap, validate

Report = Callable[[dict, Path | None], None]


class DivergedError(RuntimeError):
    """The loss became NaN or infinite: training stopped at ``epoch``, in stage ``stage``.

    Every argument is kept in ``args`` so the error survives pickling across Ray processes.

    Args:
        epoch: the (1-based) epoch whose loss was not finite.
        stage: the training stage it belongs to.
        losses: the epoch's train and validation loss.
        lr: the configured learning rate (``lr_key``).
        kept: where the last finite checkpoint was kept, if the caller knows.
        lr_key: the setting ``lr`` comes from (``ssl.lr`` for self-supervised pre-training).
    """

    # A resume keeps the run's learning rate and would diverge again; the message says what to
    # change in a new run (:func:`flows.run_folder.check_resumable` says so too).
    resumable = False

    def __init__(
        self,
        epoch: int,
        stage: str,
        losses: dict[str, float],
        lr: float,
        kept: str = "",
        lr_key: str = "train.lr",
    ) -> None:
        super().__init__(epoch, stage, losses, lr, kept, lr_key)
        self.epoch, self.stage, self.losses, self.lr, self.kept = epoch, stage, losses, lr, kept
        self.lr_key = lr_key

    def __str__(self) -> str:
        values = ", ".join(f"{name}={value}" for name, value in self.losses.items())
        if self.epoch <= 1:
            kept = "no epoch finished with a finite loss, so no checkpoint was kept"
        else:
            kept = f"the last finite checkpoint is epoch {self.epoch - 1}'s"
            kept += f" ({self.kept})" if self.kept else ""
        clip = " or set train.grad_clip" if self.lr_key == "train.lr" else ""
        return (
            f"training diverged at epoch {self.epoch} (stage {self.stage!r}): {values}; {kept}; "
            f"lower {self.lr_key} (it is {self.lr:g}){clip}"
        )


@dataclass
class FitState:
    """Progress that a checkpoint carries so a run can resume exactly where it stopped."""

    epoch: int = 0  # epochs completed over all stages
    stage_epochs: list[int] = field(default_factory=list)  # epochs completed in each stage
    closed_stages: list[int] = field(default_factory=list)  # stages ended early on patience
    stage_best_val_loss: float = math.inf
    stale_epochs: int = 0
    best_val_loss: float = math.inf  # over the last stage: what checkpoint selection uses
    best_epoch: int = -1
    pushed_stages: list[int] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)  # epochs at which the run was resumed
    stopped_early: bool = False  # some stage ended on patience before its last epoch


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
    targets: Targets | None = None,
    sample_weights: Callable | None = None,
) -> FitState:
    """Run the model's training stages; report metrics and a checkpoint every epoch.

    Args:
        model: the (unwrapped) model; its weights must already hold the resume state, if any.
        train_batches: re-iterable batches with ``set_epoch(epoch)`` and ``in_order()`` (the
            latter yields ``(x, y, sample_ids)`` for a push), e.g. :class:`ShardBatches`.
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
        targets: each training batch's soft targets ``targets(x, y) -> (N, C)`` (a frozen
            teacher's: :class:`components.training.self_distill_rounds.TeacherTargets`).
        sample_weights: each training batch's per-sample loss weights, with the epoch's
            figures from its ``epoch_metrics(device)`` (X-NeSyL's SHAP-Backprop:
            :func:`components.training.xnesyl.xnesyl_weights`).
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda" and len(spec.input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)  # what cuDNN's fast convs want
    model = prepare_model(model)
    if cfg.compile:
        unwrap(model).compile()  # in place: parameter names (and checkpoints) stay the same
    stages = unwrap(model).training_stages(cfg.epochs)
    last = _last_gradient_stage(stages)
    state = FitState(**resume["fit_state"]) if resume else FitState()
    if resume:
        state.resumed_at.append(state.epoch)
    pskd = _pskd(cfg, model, train_batches, spec, stages, resume, targets)
    targets = pskd or targets
    mix = batch_mix(cfg, spec.num_classes)
    if mix is not None:
        unwrap(model).check_soft_targets()  # train.mixup / label_smoothing need a CE
    class_weights = None
    if cfg.class_weights == "balanced":
        unwrap(model).check_soft_targets()  # weights a cross-entropy: the model needs one
        class_weights = shard_class_weights(train_batches.labels, spec.num_classes, device)
    while (index := _current_stage(state, stages)) is not None:
        stage = stages[index]
        if stage.push_first and index not in state.pushed_stages:
            push_prototypes(model, train_batches.in_order(), device)
            state.pushed_stages.append(index)
        start_stage = getattr(unwrap(model), "start_stage", None)  # SennModel's hook; plain
        if start_stage is not None:  # modules with training_stages train as before
            start_stage(stage)
        opt = build_optimizer(model, cfg, stage)
        sched = build_scheduler(opt, cfg.lr_schedule, max(stage.epochs, 1))
        # A resume without optimiser state (PBT exploit: new hyperparameters) starts it afresh.
        same_stage = resume and resume.get("stage_index") == index and state.stage_epochs[index]
        if same_stage and "optimizer" in resume:
            opt.load_state_dict(resume["optimizer"])
            sched.load_state_dict(resume["scheduler"])
        resume = None
        while _current_stage(state, stages) == index:
            metrics = _run_epoch(
                model,
                train_batches,
                val_batches,
                opt,
                cfg,
                device,
                state,
                stage,
                targets,
                sample_weights,
                mix,
                class_weights,
            )
            _check_finite(metrics, cfg, device)
            sched.step()
            _record(state, metrics, cfg, index, stage, is_last=index == last)
            extra = {"pskd": pskd.state_dict()} if pskd else {}  # gathered on every rank
            _report_epoch(report, metrics, model, spec, opt, sched, index, state, is_main, extra)
            if on_epoch_end is not None:
                on_epoch_end(state)
    return state


def _pskd(cfg, model, train_batches, spec, stages, resume, targets) -> PSKDTargets | None:
    """PS-KD's prediction table (``train.self_distill=pskd``), restored from ``resume``."""
    epochs = sum(stage.epochs for stage in stages)
    pskd = pskd_targets(cfg, unwrap(model), train_batches, spec.num_classes, epochs)
    if pskd is not None and targets is not None:
        raise ValueError("train.self_distill=pskd cannot also train against a teacher's targets")
    if pskd is not None and resume and "pskd" in resume:
        pskd.load_state_dict(resume["pskd"])
    return pskd


def _current_stage(state: FitState, stages: list[TrainingStage]) -> int | None:
    """The first stage with epochs left; a resumed run with more ``epochs`` continues its stage."""
    state.stage_epochs += [0] * (len(stages) - len(state.stage_epochs))
    for index, stage in enumerate(stages):
        done = index in state.closed_stages or state.stage_epochs[index] >= stage.epochs
        if not done:
            return index
        if stage.epochs == 0 and stage.push_first and index not in state.pushed_stages:
            return index  # a push-only stage
    return None


def _last_gradient_stage(stages: list[TrainingStage]) -> int:
    trained = [i for i, stage in enumerate(stages) if stage.epochs > 0]
    if not trained:
        raise ValueError(f"the model's training stages train for no epoch: {stages}")
    return trained[-1]


def _run_epoch(
    model,
    train_batches,
    val_batches,
    opt,
    cfg,
    device,
    state,
    stage,
    targets=None,
    weights=None,
    mix=None,
    class_weights=None,
) -> dict:
    # Seeded per global epoch, so dropout noise and shuffling are the same after a resume.
    torch.manual_seed(cfg.seed * 100_003 + state.epoch)
    train_batches.set_epoch(state.epoch)
    # A replayed STN schedule sets this epoch's dropout, weight decay and augmentation.
    batches = apply_epoch(
        unwrap(model), opt, train_batches, cfg.hyper_schedule, state.epoch, cfg.seed
    )
    start = time.perf_counter()
    epoch_info = {}
    if isinstance(targets, PSKDTargets):
        epoch_info["pskd_alpha"] = targets.start_epoch(state.epoch + 1)
        epoch_info["pskd_alpha_T"] = targets.alpha_T  # the report names the regime from these
    metrics = train_epoch(model, batches, opt, cfg, device, targets, weights, mix, class_weights)
    metrics |= epoch_info
    if weights is not None:
        metrics.update(weights.epoch_metrics(device))
    metrics.update(validate(model, val_batches, cfg, device))
    metrics.update(replayed_values(unwrap(model), opt, cfg.hyper_schedule, state.epoch))
    metrics.update(epoch=state.epoch + 1, stage=stage.name, lr=opt.param_groups[0]["lr"])
    metrics["epoch_time_s"] = time.perf_counter() - start
    return metrics


def _check_finite(metrics: dict, cfg: TrainConfig, device: torch.device) -> None:
    """Raise :class:`DivergedError` if any rank's train or validation loss is not finite."""
    losses = {name: metrics[name] for name in ("train_loss", "val_loss")}
    check_finite(losses, metrics["epoch"], metrics["stage"], cfg.lr, device)


def check_finite(
    losses: dict[str, float],
    epoch: int,
    stage: str,
    lr: float,
    device: torch.device | str = "cpu",
    lr_key: str = "train.lr",
) -> None:
    """Raise :class:`DivergedError` if any rank's ``losses`` (epoch ``epoch`` of ``stage``) has
    a NaN or infinite value; ``lr`` and ``lr_key`` name the learning rate to lower.

    The flag is summed over ranks, so every rank stops at the same epoch (DDP would hang
    if one rank stopped alone)."""
    bad = float(not all(math.isfinite(value) for value in losses.values()))
    if all_reduce(torch.tensor([bad], dtype=torch.float64, device=device)).item() > 0:
        raise DivergedError(epoch, stage, losses, lr, lr_key=lr_key)


def _record(state: FitState, metrics: dict, cfg: TrainConfig, index: int, stage, *, is_last: bool):
    """Update early stopping (per stage) and the best epoch (last stage only)."""
    val_loss = metrics["val_loss"]
    if val_loss < state.stage_best_val_loss - cfg.min_delta:
        state.stage_best_val_loss, state.stale_epochs = val_loss, 0
    else:
        state.stale_epochs += 1
    if is_last and val_loss < state.best_val_loss:
        state.best_val_loss, state.best_epoch = val_loss, metrics["epoch"]
    # Ray keeps the best checkpoints by this score; earlier stages never win.
    metrics["checkpoint_score"] = val_loss if is_last else math.inf
    state.history.append(metrics)
    state.epoch += 1
    state.stage_epochs[index] += 1
    patience_hit = 0 < cfg.early_stopping_patience <= state.stale_epochs
    if patience_hit and state.stage_epochs[index] < stage.epochs:
        state.stopped_early = True
        state.closed_stages.append(index)
    if patience_hit or state.stage_epochs[index] >= stage.epochs:
        state.stage_best_val_loss, state.stale_epochs = math.inf, 0


def _report_epoch(
    report, metrics, model, spec, opt, sched, stage_index, state, is_main, extra=None
) -> None:
    if not is_main:
        report(metrics, None)
        return
    train_state = {
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "stage_index": stage_index,
        "fit_state": asdict(state),
        **(extra or {}),
    }
    with tempfile.TemporaryDirectory(prefix="sennflow-ckpt-") as tmp:
        folder = save_checkpoint(Path(tmp), unwrap(model), spec, train_state)
        report(metrics, folder)
