"""BossNAS: block-wise self-supervised architecture search by ensemble bootstrapping.

Li et al., "BossNAS: Exploring Hybrid CNN-transformers with Block-wisely Self-supervised Neural
Architecture Search" (ICCV 2021); reference code changlin31/BossNAS (``searching/``:
``siamese_supernets_hytra.py``, ``apis/train.py`` ``multipath_batch_processor``,
``hooks/val_hook.py``, ``configs/hytra_*.py``), read for this implementation.

The HyTra space (:mod:`components.models.hytra`) is split into blocks, searched one after the
other. For block ``b`` a siamese pair is trained: the online network (stem and earlier blocks
along their chosen paths, block ``b``'s weight-sharing supernet, a projector "neck" and a
predictor "head") and its momentum target (the same without the predictor). Each step (the
reference's values: ``paths`` = 4 sampled paths, base ``momentum`` 0.99 ramped to 1 by BYOL's
cosine schedule within each block):

1. sample ``paths`` distinct paths through block ``b`` and give each its own pair of augmented
   views ``v1_j, v2_j`` (the reference's ``num_pairs=4``);
2. ensemble bootstrapping: the target of view 1 is the mean over the sampled paths of the
   l2-normalised target projections, ``T1 = 1/K sum_j normalize(target_j(v1_j))`` (likewise
   ``T2``), computed without gradient;
3. every sampled path ``j`` is trained to predict the ensemble of the other view,
   ``L_j = l(pred(online_j(v1_j)), T2) + l(pred(online_j(v2_j)), T1)`` with BYOL's
   ``l = 2 - 2 cos`` (the reference's ``LatentPredictHead``, -2 cos, differs by a constant);
   the gradients of all sampled paths are summed into one optimiser step;
4. the target's block, neck (and, for the first block, stem) follow the online ones by EMA.

Architecture rating (the reference's ``ValBestPathHook``): on the validation split, every path
of the block is scored by the same loss against the ensemble of *all* the block's paths' target
projections on one fixed pair of views; the path with the lowest loss (closest to the population
centre) is the block's choice, and the next block is searched on top of it. The searched
architecture is the chosen path of every block, retrained from scratch as ``bossnas_net``.

Departures: earlier blocks are frozen while a later block trains (the paper trains blocks
separately; the reference's optimiser still reaches earlier blocks through their best paths);
the rating's ensemble averages normalised projections as the training's does (the reference's
rating averages raw ones); batch-norm uses batch statistics throughout the search (the
reference recalibrates them per path on one training batch before rating: the same estimate);
Adam with a per-block cosine learning rate instead of LARS at batch 4096; the views are
:mod:`components.ssl.views`' crops, flips and jitter (no blur or solarisation on 8x8 digits);
the projector and predictor are :func:`components.ssl.learner.projector`'s two-layer MLPs,
after average pooling and a linear map to the widest level's channels (the reference's
``fix_channels`` convolutions). Shrunk: 3 blocks of 2 layers, 3 resolutions, a few epochs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import nn

from components.models.hytra import (
    Path,
    SuperBlock,
    architecture_dict,
    block_paths,
    channels,
    path_name,
    stem,
)
from components.ssl.learner import byol_loss, ema_update, projector
from components.ssl.probes import knn_probe
from components.ssl.views import ViewConfig, augment

Report = Callable[[dict[str, float]], None]
KEY = "search.bossnas"


@dataclass(frozen=True)
class BossNASConfig:
    """Search settings (``search.bossnas.*``).

    Attributes:
        epochs: passes over the training split per block (the budget is ``blocks * epochs``).
        blocks: blocks searched one after the other.
        layers: layers per block (each picks an op and whether to halve the resolution).
        levels: resolutions (level ``k`` is ``1/2**k`` of the input's).
        attn_min_level: the finest level at which attention layers are candidates.
        width: supernet channels at level 0 (doubled per level).
        expansion: bottleneck ratio of the candidate layers.
        heads: attention heads.
        paths: paths sampled per step, whose target ensemble is bootstrapped (paper: 4).
        momentum: base EMA momentum of the target, ramped to 1 per block (paper: 0.99).
        projection_dim: width of the projector and predictor.
        batch_size: training batch size.
        lr: Adam learning rate (cosine-annealed within each block).
        weight_decay: Adam weight decay (the paper's 1e-6).
        seed: seeds initialisation, batches, views and path sampling.
    """

    epochs: int = 2
    blocks: int = 3
    layers: int = 2
    levels: int = 3
    attn_min_level: int = 1
    width: int = 8
    expansion: int = 4
    heads: int = 2
    paths: int = 4
    momentum: float = 0.99
    projection_dim: int = 64
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "blocks", "layers", "levels", "width", "expansion", "heads"):
            _int_at_least(self, name, 1)
        for name in ("paths", "projection_dim", "batch_size"):
            _int_at_least(self, name, 2 if name != "projection_dim" else 1)
        _int_at_least(self, "attn_min_level", 0)
        _int_at_least(self, "seed", 0)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"{KEY}.momentum must lie in [0, 1), got {self.momentum!r}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"{KEY}.lr must be > 0 and {KEY}.weight_decay >= 0")
        for level in range(self.attn_min_level, self.levels):
            inner = max(channels(self.width, level) // self.expansion, 1)
            if inner % self.heads:
                raise ValueError(
                    f"{KEY}.heads={self.heads} does not divide the width {inner} of the attention "
                    f"candidates at level {level} (width * 2**level / expansion)"
                )

    @property
    def total_epochs(self) -> int:
        """Epochs over all blocks: the trial's number of reports."""
        return self.blocks * self.epochs


def bossnas_config(settings: Mapping) -> BossNASConfig:
    """``search.bossnas`` as a :class:`BossNASConfig`; ``ValueError`` names an unknown key."""
    known = [f.name for f in fields(BossNASConfig)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"{KEY}.{unknown[0]} is not a BossNAS setting; known: {known}")
    return BossNASConfig(**settings)


def _int_at_least(config: BossNASConfig, name: str, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{KEY}.{name} must be an int >= {low}, got {value!r}")


def ensemble_target(projections: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ensemble-bootstrapping target: the mean of the l2-normalised ``(N, D)`` target
    projections of the sampled paths."""
    return torch.stack([nn.functional.normalize(z, dim=1) for z in projections]).mean(0)


def momentum_at(step: int, steps: int, base: float) -> float:
    """BYOL's target momentum at ``step`` of ``steps``: ``1 - (1 - base) (cos(pi k / K) + 1) / 2``
    (``base`` at the first step, rising to 1)."""
    return 1 - (1 - base) * (math.cos(math.pi * step / steps) + 1) / 2


def path_loss(
    prediction: tuple[torch.Tensor, torch.Tensor], target: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """``l(p1, T2) + l(p2, T1)``: each view's prediction against the other view's target."""
    return byol_loss(prediction[0], target[1]) + byol_loss(prediction[1], target[0])


def rate_paths(
    predictions: Mapping[Path, tuple[torch.Tensor, torch.Tensor]],
    projections: Mapping[Path, tuple[torch.Tensor, torch.Tensor]],
) -> dict[Path, float]:
    """Each path's distance to the ensemble of every path's target projections (lower: closer
    to the population centre), from its online predictions of the two views."""
    ensemble = tuple(ensemble_target([z[i] for z in projections.values()]) for i in (0, 1))
    return {path: float(path_loss(p, ensemble)) for path, p in predictions.items()}


class _Neck(nn.Module):
    """Average pooling, a linear map to the widest level's channels, the projector MLP."""

    def __init__(self, cfg: BossNASConfig) -> None:
        super().__init__()
        top = channels(cfg.width, cfg.levels - 1)
        self.fix = nn.ModuleDict(
            {
                str(c): nn.Sequential(nn.Linear(c, top, bias=False), nn.BatchNorm1d(top))
                for c in (channels(cfg.width, lv) for lv in range(cfg.levels - 1))
            }
        )
        self.project = projector(top, cfg.projection_dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(-2, -1))
        key = str(pooled.shape[1])
        return self.project(self.fix[key](pooled) if key in self.fix else pooled)


class SiameseSupernet(nn.Module):
    """The online and momentum-target networks, grown one block at a time."""

    def __init__(self, in_channels: int, cfg: BossNASConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = stem(in_channels, cfg.width)
        self.target_stem = copy.deepcopy(self.stem).requires_grad_(False)
        self.blocks, self.target_blocks = nn.ModuleList(), nn.ModuleList()
        self.necks, self.target_necks = nn.ModuleList(), nn.ModuleList()
        self.heads = nn.ModuleList()
        self.chosen: list[Path] = []

    def add_block(self, start: int) -> None:
        """A new supernet block entered at level ``start``, with its neck, head and targets."""
        c = self.cfg
        block = SuperBlock(
            start, c.layers, c.levels, width=c.width, expansion=c.expansion, heads=c.heads
        )
        self.blocks.append(block)
        self.necks.append(_Neck(c))
        self.heads.append(projector(c.projection_dim, c.projection_dim, 2))
        self.target_blocks.append(copy.deepcopy(block).requires_grad_(False))
        self.target_necks.append(copy.deepcopy(self.necks[-1]).requires_grad_(False))

    def trained(self, b: int) -> list[nn.Module]:
        """The online modules block ``b`` trains (the stem with the first block)."""
        return [*([self.stem] if b == 0 else []), self.blocks[b], self.necks[b], self.heads[b]]

    def features(self, x: torch.Tensor, b: int, path: Path, *, target: bool) -> torch.Tensor:
        """Block ``b``'s output along ``path``, after the stem and the earlier chosen paths
        (frozen: no gradient reaches them from a later block)."""
        stem_, blocks = (
            (self.target_stem, self.target_blocks) if target else (self.stem, self.blocks)
        )
        with torch.set_grad_enabled(torch.is_grad_enabled() and b == 0):
            h = stem_(x)
            for block, chosen in zip(blocks[:b], self.chosen, strict=True):
                h = block(h, chosen)
        return blocks[b](h, path)

    def projection(self, x: torch.Tensor, b: int, path: Path) -> torch.Tensor:
        """The target network's projection (no gradient)."""
        with torch.no_grad():
            return self.target_necks[b](self.features(x, b, path, target=True))

    def prediction(self, x: torch.Tensor, b: int, path: Path) -> torch.Tensor:
        """The online network's prediction: neck, then the predictor head."""
        return self.heads[b](self.necks[b](self.features(x, b, path, target=False)))

    def momentum_update(self, b: int, momentum: float) -> None:
        """EMA of block ``b``'s target modules (and the stem's, for the first block)."""
        pairs = [(self.target_blocks[b], self.blocks[b]), (self.target_necks[b], self.necks[b])]
        if b == 0:
            pairs.append((self.target_stem, self.stem))
        for target, online in pairs:
            ema_update(target, online, momentum)


@dataclass
class BossNASResult:
    """The searched architecture: ``blocks`` (one chosen path per block), every block's
    ``ratings`` (path name -> distance to the ensemble, best first) and one row per epoch."""

    blocks: tuple[Path, ...]
    ratings: list[dict[str, float]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``{"blocks": ..., "ratings": [[{"path", "loss"}, ...], ...]}`` (plain JSON)."""
        ratings = [[{"path": p, "loss": v} for p, v in block.items()] for block in self.ratings]
        return {**architecture_dict(self.blocks), "ratings": ratings}


def search_bossnas(
    x_train: np.ndarray | torch.Tensor,
    x_val: np.ndarray | torch.Tensor,
    *,
    config: BossNASConfig,
    labels: tuple[np.ndarray, np.ndarray] | None = None,
    report: Report | None = None,
) -> BossNASResult:
    """Search the HyTra space block by block with ensemble bootstrapping (no labels).

    Args:
        x_train: ``(N, C, H, W)`` images the supernets train on.
        x_val: images the paths are rated on.
        config: search settings.
        labels: ``(y_train, y_val)``: only to report each epoch's ``val_acc``, a k-NN probe of
            the chosen paths' features (the search never sees labels).
        report: called with each epoch's metrics (``epoch`` counts over all blocks).
    """
    x, xv = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (x_train, x_val))
    if x.ndim != 4:
        raise ValueError(f"search=bossnas needs images (N, C, H, W), got {tuple(x.shape)}")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    net = SiameseSupernet(x.shape[1], config)
    result = BossNASResult(blocks=())
    for b in range(config.blocks):
        start = net.chosen[-1][-1][1] if net.chosen else 0
        net.add_block(start)
        paths = block_paths(start, config.layers, config.levels, config.attn_min_level)
        ratings = _search_block(net, b, paths, x, xv, gen, labels, report, result.history)
        net.chosen.append(min(ratings, key=ratings.get))
        result.ratings.append({path_name(p): v for p, v in sorted(ratings.items(), key=_by_loss)})
    result.blocks = tuple(net.chosen)
    return result


def _by_loss(item: tuple) -> float:
    return item[1]


def _search_block(net, b, paths, x, xv, gen, labels, report, history) -> dict[Path, float]:
    """Train block ``b`` for ``epochs`` epochs, rating its paths after each; the last ratings."""
    cfg = net.cfg
    params = [p for m in net.trained(b) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = max(1, len(x) // cfg.batch_size)  # drop the last partial batch (BN statistics)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * batches)
    views = ViewConfig()
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        losses = []
        for i in range(batches):
            batch = x[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
            pick = torch.randperm(len(paths), generator=gen)[: cfg.paths].tolist()
            loss = _step(net, b, batch, [paths[j] for j in pick], views)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            net.momentum_update(
                b, momentum_at(epoch * batches + i, cfg.epochs * batches, cfg.momentum)
            )
            losses.append(float(loss.detach()) / len(pick))
        ratings = rate_block(net, b, paths, xv, views)
        best = min(ratings, key=ratings.get)
        row = {
            "epoch": float(b * cfg.epochs + epoch),
            "block": float(b),
            "train_loss": float(np.mean(losses)),
            "val_loss": ratings[best],
        }
        if labels is not None:
            row["val_acc"] = _probe(net, b, best, x, xv, labels)
        history.append(row)
        if report is not None:
            report(row)
    return ratings


def _step(net: SiameseSupernet, b: int, x: torch.Tensor, chosen: list[Path], views) -> torch.Tensor:
    """The summed ensemble-bootstrapping loss of the sampled paths, each on its own views."""
    pairs = [(augment(x, views), augment(x, views)) for _ in chosen]
    ensemble = tuple(
        ensemble_target([net.projection(v[i], b, p) for v, p in zip(pairs, chosen, strict=True)])
        for i in (0, 1)
    )
    return sum(
        path_loss((net.prediction(v1, b, p), net.prediction(v2, b, p)), ensemble)
        for (v1, v2), p in zip(pairs, chosen, strict=True)
    )


@torch.no_grad()
def rate_block(
    net: SiameseSupernet, b: int, paths: list[Path], x_val: torch.Tensor, views: ViewConfig
) -> dict[Path, float]:
    """Every path's mean distance to the all-path ensemble over the validation batches, on
    views fixed by the seed (the same for every path and every epoch)."""
    net.train()  # batch statistics: shared running statistics would mix the paths
    totals = dict.fromkeys(paths, 0.0)
    with torch.random.fork_rng():
        torch.manual_seed(net.cfg.seed + 1)
        for chunk in x_val.split(256):
            if len(chunk) < 2:
                continue
            v = (augment(chunk, views), augment(chunk, views))
            projections = {
                p: (net.projection(v[0], b, p), net.projection(v[1], b, p)) for p in paths
            }
            predictions = {
                p: (net.prediction(v[0], b, p), net.prediction(v[1], b, p)) for p in paths
            }
            for p, loss in rate_paths(predictions, projections).items():
                totals[p] += loss * len(chunk)
    rows = sum(len(c) for c in x_val.split(256) if len(c) >= 2)
    return {p: total / max(rows, 1) for p, total in totals.items()}


@torch.no_grad()
def _probe(net: SiameseSupernet, b: int, path: Path, x, xv, labels) -> float:
    """k-NN probe accuracy on the val split of the pooled online features along the chosen
    paths (a diagnostic for ranking trials; labels never reach the search)."""
    net.train()

    def embed(data: torch.Tensor) -> np.ndarray:
        parts = [net.features(c, b, path, target=False).mean(dim=(-2, -1)) for c in data.split(512)]
        return torch.cat(parts).double().numpy()

    return knn_probe(embed(x), labels[0], embed(xv), labels[1])
