"""The self-supervised learner: encoder + projector (+ predictor and EMA target) and its loop.

Objectives (``SSLConfig.objective``):

* ``barlow_twins``: :mod:`components.ssl.barlow_twins` on the projections of two views. The
  reference's projector (``Linear`` without bias, ``BatchNorm1d``, ``ReLU``; last ``Linear``) is
  kept; its LARS optimiser (batch 2048, 1000 epochs) is replaced by Adam for small CPU runs.
* ``directpred`` / ``jepa``: BYOL-style self-distillation: the online branch's predictor output
  regresses the EMA target network's projection of the other view, with a stop-gradient on the
  target, by ``2 - 2 cos`` symmetrised over the views (BYOL; luckmatters' byol_trainer). The
  predictor is DirectPred's (:mod:`components.ssl.directpred`) with ``predictor=direct`` (the
  ``directpred`` default) or a trained bias-free linear layer with ``predictor=linear`` (the
  ``jepa`` default: latent prediction with an EMA target, as in the deep linear
  self-distillation JEPAs of Littwin et al. 2024).
  ``stop_gradient=False`` is the ablation of Tian et al.: the target is the online network
  itself, gradients flow through both branches, and the representation collapses.

:func:`pretrain_encoder` is the plain, in-process entry (no Ray, no Prefect); the Ray Train
wrapper (``components.training.ssl_ray``) runs the same :func:`train_ssl` in its workers.

An epoch whose loss, embedding or projection is NaN or infinite (:data:`DIVERGENCE_KEYS`) stops
:func:`train_ssl` before the epoch is reported, so no diverged encoder is ever saved: by
:func:`raise_if_diverged` in-process, by the check the caller passes otherwise (the Ray Train
wrapper's raises the supervised fit's ``DivergedError``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from components.models import create_model
from components.ssl.barlow_twins import barlow_twins_loss, cross_correlation, off_diagonal
from components.ssl.checkpoint import save_encoder_checkpoint
from components.ssl.config import SSLConfig
from components.ssl.directpred import DirectPredictor
from components.ssl.encoders import Embedder, encoder_of
from components.ssl.probes import collapse_diagnostics
from components.ssl.views import augment


def projector(dim_in: int, width: int, layers: int) -> nn.Sequential:
    """Barlow Twins' projector: ``layers`` linear maps to ``width``, BN + ReLU between them."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules.append(nn.Linear(dim_in if i == 0 else width, width, bias=False))
        if i < layers - 1:
            modules += [nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
    return nn.Sequential(*modules)


class SSLNet(nn.Module):
    """Online encoder + projector, and for self-distillation a predictor and an EMA target."""

    def __init__(self, embedder: Embedder, embedding_dim: int, cfg: SSLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedder = embedder
        self.projector = projector(embedding_dim, cfg.projector_width, cfg.projector_layers)
        self.predictor: nn.Module | None = None
        self.target: nn.Module | None = None
        if cfg.objective != "barlow_twins":
            width = cfg.projector_width
            self.predictor = (
                DirectPredictor(width, rho=cfg.dp_rho, eps=cfg.dp_eps, freq=cfg.dp_freq)
                if cfg.predictor == "direct"
                else nn.Linear(width, width, bias=False)
            )
            online = nn.Sequential(self.embedder, self.projector)
            self.target = copy.deepcopy(online).requires_grad_(False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of a pair of views (so a DDP wrapper synchronises their gradients)."""
        return self.loss(x1, x2)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.embedder(x))

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms of one pair of views (``total`` is optimised)."""
        z1, z2 = self.project(x1), self.project(x2)
        if self.cfg.objective == "barlow_twins":
            return barlow_twins_loss(z1, z2, self.cfg.off_diagonal_weight)
        if isinstance(self.predictor, DirectPredictor):
            self.predictor.observe(torch.cat([z1, z2]))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        if self.cfg.stop_gradient:
            with torch.no_grad():
                t1, t2 = self.target(x1), self.target(x2)
        else:
            t1, t2 = z1, z2
        total = (byol_loss(p1, t2) + byol_loss(p2, t1)) / 2
        return {"total": total}

    @torch.no_grad()
    def update_target(self) -> None:
        """``target <- ema * target + (1 - ema) * online`` (BYOL), after each step."""
        if self.target is None:
            return
        ema_update(self.target, nn.Sequential(self.embedder, self.projector), self.cfg.ema)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """BYOL's momentum update: every parameter ``t <- momentum * t + (1 - momentum) * o`` of
    ``target`` from its twin in ``online``; buffers (batch-norm statistics) are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(p, z)`` averaged over the batch (BYOL's normalised MSE)."""
    cos = nn.functional.cosine_similarity(p, z, dim=-1)
    return (2 - 2 * cos).mean()


@dataclass
class PretrainResult:
    """What pre-training returns: the whole model (its encoder trained), the embedder that
    shares the encoder's parameters, the learner, and one metrics dict per epoch."""

    model: nn.Module
    embedder: Embedder
    net: SSLNet
    history: list[dict]
    spec: dict

    def save(self, folder: Path) -> Path:
        """Write the encoder as an SSL checkpoint folder (:mod:`components.ssl.checkpoint`)."""
        return save_checkpoint(folder, self.model, self.spec, self.net.cfg, len(self.history) - 1)


def save_checkpoint(folder: Path, model: nn.Module, spec: dict, cfg: SSLConfig, epochs: int):
    """Save ``model``'s pre-trained encoder with what produced it."""
    embedding_dim = model_embedding_dim(model, tuple(spec["input_shape"]))
    info = {
        "objective": cfg.objective,
        "embedding_dim": embedding_dim,
        "projector_width": cfg.projector_width,
        "epochs": epochs,
    }
    return save_encoder_checkpoint(folder, model, spec, info)


@torch.no_grad()
def model_embedding_dim(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The width ``D`` of ``model``'s flattened encoder output."""
    embedder = Embedder(encoder_of(model))
    training = embedder.training
    out = embedder.eval()(torch.zeros(2, *input_shape)).shape[1]
    embedder.train(training)
    return int(out)


def build_learner(
    model_name: str,
    input_shape: tuple[int, ...],
    cfg: SSLConfig,
    *,
    num_classes: int = 2,
    tiny: bool = False,
    model_params: dict | None = None,
) -> tuple[nn.Module, SSLNet]:
    """The registered model and an :class:`SSLNet` around its encoder (seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    model = create_model(
        model_name,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        tiny=tiny,
        **(model_params or {}),
    )
    dim = model_embedding_dim(model, tuple(input_shape))
    return model, SSLNet(Embedder(encoder_of(model)), dim, cfg)


DIVERGENCE_KEYS = ("ssl_loss", "embedding_std", "projection_std")


def raise_if_diverged(metrics: dict) -> None:
    """:func:`train_ssl`'s default check: ``FloatingPointError`` if an epoch's
    :data:`DIVERGENCE_KEYS` are not all finite."""
    values = {key: metrics[key] for key in DIVERGENCE_KEYS}
    if not all(math.isfinite(value) for value in values.values()):
        shown = ", ".join(f"{key}={value}" for key, value in values.items())
        raise FloatingPointError(f"SSL pre-training diverged at epoch {metrics['epoch']}: {shown}")


def train_ssl(
    net: SSLNet,
    x: torch.Tensor,
    cfg: SSLConfig,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    train_module: nn.Module | None = None,
    check: Callable[[dict], None] = raise_if_diverged,
) -> list[dict]:
    """Run ``cfg.epochs`` epochs of the objective on the rows ``x`` (labels are never seen).

    Args:
        net: the learner; ``train_module``: what gradients flow through when it differs
            (a DDP-wrapped ``net`` on a Ray worker).
        on_epoch: called with each epoch's metrics (loss, off-diagonal mass, embedding std,
            effective rank), first with the untrained net's (epoch 0, ``ssl_loss`` None).
        check: called with each epoch's metrics before ``on_epoch``; raises to stop a diverged
            run (:func:`raise_if_diverged` by default).

    Returns:
        One metrics dict per epoch, after the diagnostics of the untrained net (epoch 0).
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    module = train_module or net
    batches = max(1, len(x) // cfg.batch_size)  # drop the last partial batch (BN statistics)
    history: list[dict] = [{"epoch": 0, "ssl_loss": None, **diagnose(net, x, cfg)}]
    if on_epoch is not None:
        on_epoch(history[0])
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        losses = []
        for b in range(batches):
            batch = x[order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            terms = module(augment(batch, cfg.views), augment(batch, cfg.views))
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            net.update_target()
            losses.append(float(terms["total"].detach()))
        metrics = {"epoch": epoch, "ssl_loss": float(np.mean(losses)), **diagnose(net, x, cfg)}
        check(metrics)
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    return history


_DIAGNOSTIC_ROWS = 512
_DIAGNOSTICS = (
    "embedding_std",
    "effective_rank",
    "projection_std",
    "projection_rank",
    "off_diagonal_mass",
    "diagonal_mean",
    "redundancy",
)


@torch.no_grad()
def diagnose(net: SSLNet, x: torch.Tensor, cfg: SSLConfig) -> dict:
    """Collapse diagnostics on (up to 512 rows of) clean inputs: the std and effective rank of
    the embedding (``embedding_*``) and of its projection (``projection_std``,
    ``projection_rank``); of two views' projections, the mean squared off-diagonal and the mean
    diagonal cross-correlation (Barlow Twins' two terms), and ``redundancy``, the mean squared
    off-diagonal correlation among one view's projection dimensions. All NaN once the embedding
    or its projection is not finite (a diverged net: no SVD of NaNs)."""
    net.eval()
    rows = x[:_DIAGNOSTIC_ROWS]
    embedding = net.embedder(rows)
    if not (torch.isfinite(embedding).all() and torch.isfinite(net.projector(embedding)).all()):
        net.train()
        return dict.fromkeys(_DIAGNOSTICS, math.nan)
    stats = collapse_diagnostics(embedding.numpy())
    projected = collapse_diagnostics(net.projector(embedding).numpy())
    stats.update({f"projection_{k.split('_')[-1]}": v for k, v in projected.items()})
    z1, z2 = net.project(augment(rows, cfg.views)), net.project(augment(rows, cfg.views))
    c = cross_correlation(z1, z2)
    stats["off_diagonal_mass"] = float(off_diagonal(c).pow(2).mean())
    stats["diagonal_mean"] = float(torch.diagonal(c).mean())
    stats["redundancy"] = float(off_diagonal(cross_correlation(z1, z1)).pow(2).mean())
    net.train()
    return stats


@torch.no_grad()
def cross_correlation_block(net: SSLNet, x: torch.Tensor, cfg: SSLConfig, size: int = 64):
    """The top-left ``size x size`` block of two views' projection cross-correlation (the
    matrix Barlow Twins pulls to the identity), on up to 512 rows, as nested lists."""
    net.eval()
    rows = x[:_DIAGNOSTIC_ROWS]
    c = cross_correlation(
        net.project(augment(rows, cfg.views)), net.project(augment(rows, cfg.views))
    )
    net.train()
    return c[:size, :size].tolist()


def pretrain_encoder(
    model_name: str,
    x_train: torch.Tensor | np.ndarray,
    cfg: SSLConfig,
    *,
    num_classes: int = 2,
    tiny: bool = False,
    model_params: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    check: Callable[[dict], None] = raise_if_diverged,
) -> PretrainResult:
    """Pre-train the encoder of ``model_name`` on ``x_train`` in this process (no Ray, no Prefect).

    Args:
        model_name: a registered model (its encoder: :mod:`components.ssl.encoders`).
        x_train: training inputs ``(N, *input_shape)``, standardised as the datasets are.
        cfg: the objective and its hyperparameters.
        num_classes, tiny, model_params: build the model as the later supervised run will.
        on_epoch, check: as :func:`train_ssl`'s.

    Returns:
        The model with its encoder trained, the embedder (``(N, ...) -> (N, D)``), the learner and
        the per-epoch history.
    """
    x = torch.as_tensor(np.asarray(x_train), dtype=torch.float32)
    params = dict(model_params or {})
    model, net = build_learner(
        model_name, tuple(x.shape[1:]), cfg, num_classes=num_classes, tiny=tiny, model_params=params
    )
    history = train_ssl(net, x, cfg, on_epoch=on_epoch, check=check)
    spec = model_spec_dict(model_name, tuple(x.shape[1:]), num_classes, tiny, params)
    embedder = net.embedder.eval()
    return PretrainResult(
        model=model.eval(), embedder=embedder, net=net, history=history, spec=spec
    )


def model_spec_dict(name: str, input_shape, num_classes: int, tiny: bool, params: dict) -> dict:
    """The source model as ``model.json`` records it (ModelSpec's fields)."""
    return {
        "name": name,
        "input_shape": list(input_shape),
        "num_classes": int(num_classes),
        "tiny": bool(tiny),
        "kwargs": dict(params),
    }
