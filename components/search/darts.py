"""Differentiable architecture search (DARTS), SD-DARTS and random search with weight sharing.

* DARTS (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019): the
  bilevel problem is solved by alternating an architecture step on a validation batch with a
  weight step on a training batch (Algorithm 1). ``order=1`` uses the current weights
  (first-order approximation); ``order=2`` differentiates through one unrolled SGD step
  ``w' = w - xi * grad_w L_train(w, alpha)`` (with the optimiser's momentum and weight decay, and
  ``xi`` the current weight learning rate) and approximates the Hessian-vector product by central
  finite differences with ``epsilon = 0.01 / ||grad_w' L_val||`` (eq. 7-8). Paper coefficients:
  weights SGD lr 0.025 cosine-annealed to 0.001, momentum 0.9, weight decay 3e-4, grad-norm clip 5;
  alphas Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3. The genotype keeps, per
  intermediate node, the 2 strongest incoming edges, each with its strongest non-``none`` op.
* SD-DARTS (Zhu, Li, Liu & Wang, "Improving Differentiable Architecture Search via
  Self-Distillation", 2023): the weight loss gains a KL term ``T^2 * KL(vote || student)`` towards
  *voting teachers*, the supernets (weights and alphas) of the previous ``sd_teachers`` steps,
  whose class probabilities are aggregated by soft voting (their mean). The vote rule, weight
  (1.0) and temperature (1.0) are our defaults; the abstract does not fix them.
* Random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for
  Neural Architecture Search", UAI 2019): every weight step trains the shared supernet through one
  uniformly sampled architecture; afterwards ``num_candidates`` sampled architectures are ranked
  by validation loss under the shared weights and the best is returned.

Shrunk for a 2-core CPU and 8x8 digits: a few channels, 2-3 cells, 2-4 nodes, a few epochs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from components.models.nas_cells import DerivedNetwork, SuperNet
from components.models.nas_ops import PRIMITIVES, Genotype, check_ops

__all__ = [
    "DartsConfig",
    "DerivedNetwork",
    "Genotype",
    "SearchResult",
    "derive_genotype",
    "search_darts",
    "search_random_ws",
]

Report = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class DartsConfig:
    """Search hyperparameters (defaults: the paper's optimisers on a shrunk supernet).

    Attributes:
        epochs: passes over the training set.
        channels: stem / first-cell channels of the supernet.
        cells: number of cells (>= 3; reductions at 1/3 and 2/3 of the depth).
        nodes: intermediate nodes per cell.
        batch_size: train and val batch size.
        w_lr: initial weight learning rate (cosine-annealed to ``w_lr_min``).
        w_lr_min: final weight learning rate.
        w_momentum: SGD momentum of the weights.
        w_weight_decay: weight decay of the weights.
        alpha_lr: Adam learning rate of the architecture weights.
        alpha_weight_decay: weight decay of the architecture weights.
        grad_clip: max gradient norm of the weights.
        order: 1 (first-order) or 2 (unrolled second-order) architecture gradient.
        sd: add the SD-DARTS self-distillation term to the weight loss.
        sd_teachers: K, the number of previous-step supernets that vote.
        sd_weight: weight of the distillation term.
        sd_temperature: softmax temperature of teachers and student in the distillation term.
        seed: seed of initialisation, batching and architecture sampling.
        ops: the candidate operations of every edge (default :data:`PRIMITIVES`; any
            ``nas_ops.OPS`` name, e.g. ``kan_conv``); a list is accepted.
    """

    epochs: int = 10
    channels: int = 4
    cells: int = 3
    nodes: int = 3
    batch_size: int = 64
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    alpha_lr: float = 3e-4
    alpha_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    order: int = 1
    sd: bool = False
    sd_teachers: int = 2
    sd_weight: float = 1.0
    sd_temperature: float = 1.0
    seed: int = 0
    ops: tuple[str, ...] = PRIMITIVES

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", check_ops(self.ops, param="DartsConfig.ops"))
        for name in ("epochs", "channels", "cells", "nodes", "batch_size", "sd_teachers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.nodes < 2 or self.cells < 3:
            # With fewer than 3 cells both DARTS reduction slots hold every cell: no normal cell.
            raise ValueError("DARTS needs nodes >= 2 and cells >= 3")
        if self.order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {self.order}")
        if min(self.w_lr, self.alpha_lr, self.sd_temperature) <= 0 or self.sd_weight < 0:
            raise ValueError("learning rates and temperature must be > 0, sd_weight >= 0")


@dataclass
class SearchResult:
    """Outcome of a search.

    Attributes:
        genotype: the selected architecture.
        history: one dict of metrics per epoch (and, for random search, a final ranking entry).
        alphas: ``softmax`` architecture weights per cell type, ``[edge][primitive]``
            (empty for random search, which has none).
    """

    genotype: Genotype
    history: list[dict[str, float]] = field(default_factory=list)
    alphas: dict[str, list[list[float]]] = field(default_factory=dict)


def derive_genotype(
    alpha_normal: torch.Tensor,
    alpha_reduce: torch.Tensor,
    *,
    ops: tuple[str, ...] = PRIMITIVES,
) -> Genotype:
    """Discretise architecture weights as in DARTS (section 2.4).

    Args:
        alpha_normal: ``(num_edges, len(ops))`` logits of the normal cell.
        alpha_reduce: same for the reduction cell.
        ops: the operations of the alphas' columns.

    Returns:
        The genotype with the top-2 incoming edges per node, each with its best non-``none`` op.
    """
    return Genotype(normal=_derive_cell(alpha_normal, ops), reduce=_derive_cell(alpha_reduce, ops))


def _derive_cell(alpha: torch.Tensor, ops: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    weights = alpha.detach().softmax(dim=-1)
    if "none" in ops:
        weights[:, ops.index("none")] = -1.0
    edges, offset, node = [], 0, 0
    while offset < len(weights):
        block = weights[offset : offset + node + 2]
        strongest = block.max(dim=-1).values.argsort(descending=True)[:2]
        for src in sorted(strongest.tolist()):
            edges.append((ops[int(block[src].argmax())], src))
        offset, node = offset + node + 2, node + 1
    return tuple(edges)


def search_darts(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_val: np.ndarray | torch.Tensor,
    y_val: np.ndarray | torch.Tensor,
    *,
    num_classes: int,
    config: DartsConfig,
    report: Report | None = None,
) -> SearchResult:
    """Run (SD-)DARTS and discretise the learned architecture weights.

    Args:
        x_train: ``(N, C, H, W)`` float images for the weight steps.
        y_train: ``(N,)`` integer labels.
        x_val: images for the architecture steps (and the per-epoch metrics).
        y_val: their labels.
        num_classes: number of classes.
        config: search hyperparameters.
        report: optional callback receiving each epoch's metrics.

    Returns:
        The derived genotype, per-epoch history and final softmaxed architecture weights.
    """
    torch.manual_seed(config.seed)
    data = image_tensors(x_train, y_train, x_val, y_val)
    model = SuperNet(
        data[0].shape[1], num_classes, config.channels, config.cells, config.nodes, ops=config.ops
    )
    w_opt, sched = weight_optimiser(model, config)
    a_opt = torch.optim.Adam(
        model.arch_parameters(),
        config.alpha_lr,
        (0.5, 0.999),
        weight_decay=config.alpha_weight_decay,
    )
    teachers: deque[dict[str, torch.Tensor]] = deque(maxlen=config.sd_teachers)
    history = []
    gen = torch.Generator().manual_seed(config.seed)
    for epoch in range(config.epochs):
        terms: dict[str, list[float]] = {"train_loss": [], "distill": []}
        for (xb, yb), (xv, yv) in zip(
            batches(*data[:2], config.batch_size, gen),
            batches(*data[2:], config.batch_size, gen, cycle=True),
            strict=False,
        ):
            _arch_step(model, w_opt, (xb, yb), (xv, yv), sched.get_last_lr()[0], config)
            a_opt.step()
            ce, distill = _weight_step(model, w_opt, xb, yb, teachers, config)
            terms["train_loss"].append(ce)
            terms["distill"].append(distill)
            if config.sd:
                teachers.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        sched.step()
        history.append(_epoch_metrics(model, epoch, terms, data[2], data[3], report))
    alphas = {
        "normal": model.alpha_normal.detach().softmax(-1).tolist(),
        "reduce": model.alpha_reduce.detach().softmax(-1).tolist(),
        "primitives": list(config.ops),
    }
    genotype = derive_genotype(model.alpha_normal, model.alpha_reduce, ops=config.ops).validate()
    return SearchResult(genotype=genotype, history=history, alphas=alphas)


def search_random_ws(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_val: np.ndarray | torch.Tensor,
    y_val: np.ndarray | torch.Tensor,
    *,
    num_classes: int,
    config: DartsConfig,
    num_candidates: int = 100,
    report: Report | None = None,
) -> SearchResult:
    """Random search with weight sharing (Li & Talwalkar 2019).

    Args:
        x_train: ``(N, C, H, W)`` float images for the shared-weight training.
        y_train: ``(N,)`` integer labels.
        x_val: images used to rank the candidates.
        y_val: their labels.
        num_classes: number of classes.
        config: search hyperparameters (the ``alpha_*``, ``order`` and ``sd*`` fields are unused).
        num_candidates: architectures sampled and ranked at the end.
        report: optional callback receiving each epoch's metrics.

    Returns:
        The candidate with the lowest validation loss; ``history`` ends with a ``ranking`` entry.

    Raises:
        ValueError: if ``num_candidates < 1``.
    """
    x_tr, y_tr, x_va, y_va, model, w_opt, sched, gen = start_shared_search(
        x_train,
        y_train,
        x_val,
        y_val,
        num_classes=num_classes,
        config=config,
        num_candidates=num_candidates,
    )
    history = []
    for epoch in range(config.epochs):
        model.train()
        losses = []
        for xb, yb in batches(x_tr, y_tr, config.batch_size, gen):
            genotype = sample_genotype(config.nodes, gen, ops=config.ops)
            losses.append(shared_weight_step(model, w_opt, xb, yb, genotype, config))
        sched.step()
        entry = {
            "epoch": float(epoch),
            "train_loss": float(np.mean(losses)),
            "val_loss": _shared_weight_val_loss(model, config.nodes, gen, x_va, y_va),
        }
        history.append(entry)
        if report is not None:
            report(entry)
    candidates = [sample_genotype(config.nodes, gen, ops=config.ops) for _ in range(num_candidates)]
    scored = rank_candidates(model, candidates, x_va, y_va)
    best_loss, best = scored[0]
    history.append(
        {
            "candidates": float(len(scored)),
            "best_val_loss": best_loss,
            "worst_val_loss": scored[-1][0],
        }
    )
    return SearchResult(genotype=best.validate(), history=history)


class SharedSearch(NamedTuple):
    """What a weight-sharing search (random_ws, ENAS) starts from."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    model: SuperNet
    optimiser: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.CosineAnnealingLR
    gen: torch.Generator


def start_shared_search(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_val: np.ndarray | torch.Tensor,
    y_val: np.ndarray | torch.Tensor,
    *,
    num_classes: int,
    config: DartsConfig,
    num_candidates: int,
) -> SharedSearch:
    """Seed, and build the shared supernet, its weight optimiser and the sampling generator.

    Raises:
        ValueError: if ``num_candidates < 1`` or the arrays are not ``(N, C, H, W)`` images.
    """
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
    torch.manual_seed(config.seed)
    x_tr, y_tr, x_va, y_va = image_tensors(x_train, y_train, x_val, y_val)
    model = SuperNet(
        x_tr.shape[1], num_classes, config.channels, config.cells, config.nodes, ops=config.ops
    )
    w_opt, sched = weight_optimiser(model, config)
    gen = torch.Generator().manual_seed(config.seed)
    return SharedSearch(x_tr, y_tr, x_va, y_va, model, w_opt, sched, gen)


@torch.no_grad()
def _shared_weight_val_loss(
    model: SuperNet, nodes: int, gen: torch.Generator, x: torch.Tensor, y: torch.Tensor
) -> float:
    """Validation loss of one sampled architecture under the shared weights (batch statistics,
    as in the training steps): the per-epoch progress signal of random search."""
    model.train()
    return F.cross_entropy(model(x, sample_genotype(nodes, gen, ops=model.ops)), y).item()


def sample_genotype(
    nodes: int, gen: torch.Generator, *, ops: tuple[str, ...] = PRIMITIVES
) -> Genotype:
    """A uniformly random genotype: 2 distinct inputs per node, a random non-``none`` op of
    ``ops`` each."""
    ops = tuple(op for op in ops if op != "none")

    def cell() -> tuple[tuple[str, int], ...]:
        edges = []
        for node in range(nodes):
            for src in sorted(torch.randperm(node + 2, generator=gen)[:2].tolist()):
                edges.append((ops[int(torch.randint(len(ops), (1,), generator=gen))], src))
        return tuple(edges)

    return Genotype(normal=cell(), reduce=cell())


def shared_weight_step(
    model: SuperNet,
    opt: torch.optim.SGD,
    x: torch.Tensor,
    y: torch.Tensor,
    genotype: Genotype,
    config: DartsConfig,
) -> float:
    """One step of the shared weights through ``genotype``'s path (clipped SGD, as the weight
    steps of DARTS); returns the cross-entropy."""
    model.train()
    loss = F.cross_entropy(model(x, genotype), y)
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.weight_parameters(), config.grad_clip)
    opt.step()
    return loss.item()


@torch.no_grad()
def rank_candidates(
    model: SuperNet, candidates: list[Genotype], x_val: torch.Tensor, y_val: torch.Tensor
) -> list[tuple[float, Genotype]]:
    """``(validation loss, genotype)`` of each distinct candidate under the shared weights,
    lowest loss first."""
    # Train-mode BN: the shared running statistics mix all sampled paths, so each candidate is
    # scored with its own batch statistics (as weight-sharing random search does).
    model.train()
    scored = {}
    for genotype in candidates:
        if genotype not in scored:
            scored[genotype] = F.cross_entropy(model(x_val, genotype), y_val).item()
    return sorted(((loss, g) for g, loss in scored.items()), key=lambda t: t[0])


def image_tensors(*arrays: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x_train, y_train, x_val, y_val`` as float image and long label tensors.

    Raises:
        ValueError: if the images are not ``(N, C, H, W)``.
    """
    x_tr, y_tr, x_va, y_va = (torch.as_tensor(a) for a in arrays)
    if x_tr.ndim != 4 or x_va.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got {tuple(x_tr.shape)}")
    return x_tr.float(), y_tr.long(), x_va.float(), y_va.long()


def batches(
    x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator, *, cycle: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled ``(x, y)`` batches of one pass (``cycle``: endless passes), drawn from ``gen``."""
    while True:
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), size):
            idx = order[start : start + size]
            yield x[idx], y[idx]
        if not cycle:
            return


def weight_optimiser(
    model: SuperNet, config: DartsConfig
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """The paper's weight optimiser: SGD with momentum, cosine-annealed over the epochs."""
    opt = torch.optim.SGD(
        model.weight_parameters(),
        lr=config.w_lr,
        momentum=config.w_momentum,
        weight_decay=config.w_weight_decay,
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs, eta_min=config.w_lr_min)
    return opt, sched


def _weight_step(
    model: SuperNet,
    opt: torch.optim.SGD,
    x: torch.Tensor,
    y: torch.Tensor,
    teachers: deque[dict[str, torch.Tensor]],
    config: DartsConfig,
) -> tuple[float, float]:
    """One weight step; returns the cross-entropy and the (unweighted) distillation term."""
    model.train()
    logits = model(x)
    ce = F.cross_entropy(logits, y)
    distill = torch.zeros(())
    if config.sd and teachers:
        distill = _voting_distillation(model, teachers, x, logits, config.sd_temperature)
    opt.zero_grad()
    (ce + config.sd_weight * distill).backward()
    nn.utils.clip_grad_norm_(model.weight_parameters(), config.grad_clip)
    opt.step()
    # The architecture step already consumed its own gradient; drop the weight loss's.
    for alpha in model.arch_parameters():
        alpha.grad = None
    return ce.item(), distill.item()


def _voting_distillation(
    model: SuperNet,
    teachers: deque[dict[str, torch.Tensor]],
    x: torch.Tensor,
    logits: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """``T^2 * KL(vote || student)`` with the vote the mean of the teachers' probabilities."""
    with torch.no_grad():
        probs = [
            (functional_call(model, snap, (x,)) / temperature).softmax(-1) for snap in teachers
        ]
        vote = torch.stack(probs).mean(0)
    log_student = F.log_softmax(logits / temperature, dim=-1)
    return temperature**2 * F.kl_div(log_student, vote, reduction="batchmean")


def _arch_step(
    model: SuperNet,
    w_opt: torch.optim.SGD,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    xi: float,
    config: DartsConfig,
) -> None:
    """Set ``alpha.grad`` to the first- or second-order architecture gradient."""
    model.train()
    alphas = model.arch_parameters()
    if config.order == 1:
        loss = F.cross_entropy(model(val[0]), val[1])
        grads = torch.autograd.grad(loss, alphas)
    else:
        grads = _unrolled_arch_grad(model, w_opt, train, val, xi, config)
    for alpha, grad in zip(alphas, grads, strict=True):
        alpha.grad = grad


def _unrolled_arch_grad(
    model: SuperNet,
    w_opt: torch.optim.SGD,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    xi: float,
    config: DartsConfig,
) -> list[torch.Tensor]:
    """DARTS eq. 7-8: ``grad_a L_val(w', a) - xi * (grad_a L_train(w+) - grad_a L_train(w-)) /
    (2 eps)`` with ``w' = w - xi * (momentum + grad_w L_train + wd * w)`` and
    ``w+- = w +- eps * grad_w' L_val(w', a)``."""
    names = [n for n, _ in model.named_parameters() if not n.startswith("alpha_")]
    weights = model.weight_parameters()
    alphas = model.arch_parameters()
    g_train = torch.autograd.grad(F.cross_entropy(model(train[0]), train[1]), weights)
    unrolled = {}
    for name, w, g in zip(names, weights, g_train, strict=True):
        buf = w_opt.state.get(w, {}).get("momentum_buffer")
        moment = 0.0 if buf is None else config.w_momentum * buf
        step = moment + g + config.w_weight_decay * w.detach()
        unrolled[name] = (w.detach() - xi * step).requires_grad_(True)
    val_loss = F.cross_entropy(functional_call(model, unrolled, (val[0],)), val[1])
    grads = torch.autograd.grad(val_loss, alphas + list(unrolled.values()))
    d_alpha, d_w = grads[: len(alphas)], grads[len(alphas) :]
    eps = 0.01 / (torch.cat([d.flatten() for d in d_w]).norm() + 1e-12)

    def train_alpha_grad(sign: float) -> tuple[torch.Tensor, ...]:
        shifted = {
            n: w.detach() + sign * eps * d for n, w, d in zip(names, weights, d_w, strict=True)
        }
        loss = F.cross_entropy(functional_call(model, shifted, (train[0],)), train[1])
        return torch.autograd.grad(loss, alphas)

    g_plus, g_minus = train_alpha_grad(1.0), train_alpha_grad(-1.0)
    return [
        d - xi * (gp - gm) / (2 * eps) for d, gp, gm in zip(d_alpha, g_plus, g_minus, strict=True)
    ]


@torch.no_grad()
def _epoch_metrics(
    model: SuperNet,
    epoch: int,
    terms: dict[str, list[float]],
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    report: Report | None,
) -> dict[str, float]:
    # Batch statistics, as in the architecture step: the non-affine BN running statistics lag the
    # fast-moving mixed weights of a short search and give near-chance eval-mode accuracy.
    model.train()
    logits = model(x_val)
    entry = {
        "epoch": float(epoch),
        "train_loss": float(np.mean(terms["train_loss"])),
        "distill": float(np.mean(terms["distill"])),
        "distill_last": terms["distill"][-1],
        "val_loss": F.cross_entropy(logits, y_val).item(),
        "val_acc": (logits.argmax(-1) == y_val).float().mean().item(),
    }
    if report is not None:
        report(entry)
    return entry
