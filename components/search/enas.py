"""ENAS over the DARTS cell space, and the memory-buffer fix of Adam & Lorraine.

* ENAS (Pham et al., "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018;
  reference code melodyguan/enas, ``micro_controller.py`` and ``main.py``): an LSTM controller
  (:mod:`components.search.enas_controller`) samples a normal and a reduction cell; each epoch
  first trains the shared supernet weights for one pass over the training split, one sampled
  child per batch, with exactly the weight step of random search with weight sharing
  (:func:`components.search.darts.shared_weight_step`), then takes ``controller_steps``
  REINFORCE steps, each on ``aggregate`` sampled children (ENAS: 30 steps of 10). The reward of a
  child is its accuracy on one validation batch under the shared weights plus
  ``entropy_weight`` times its sampling entropy; the advantage subtracts a moving-average
  baseline ``b <- decay * b + (1 - decay) * R`` taken after each reward (ENAS's order), started
  at the first reward (as the study's code, menas, does; ENAS starts at 0). Controller: Adam
  lr 3.5e-4 (the ENAS paper's), baseline decay 0.99, entropy weight 1e-4, logits
  ``2.5 * tanh(logits / 5)`` (the paper's tanh constant 2.5 and temperature 5.0; the reference
  micro-search script uses tanh 1.1 without temperature). At the end ``num_candidates``
  architectures are sampled from the trained controller and the one with the lowest validation
  loss under the shared weights is returned, ranked exactly as random search ranks its
  candidates (ENAS keeps the best sample by its reward, a minibatch accuracy; the same ranking
  here makes the comparison with random search one of the samplers only).
* The fix (Adam & Lorraine, "Understanding Neural Architecture Search Techniques", 2019; their
  code georgeadam/menas, ``supervised_trainer.py``, and the authors' post): the controller's
  loss gains a supervised term, the teacher-forced negative log-likelihood (mean per decision)
  of a random batch of ``memory_batch`` architectures from a memory buffer of architectures it
  sampled earlier, ``L = L_PG + memory_weight * L_sup``, which forces its hidden state to carry
  its past decisions. The paper fills the buffer from epoch 5 with 1,000 samples per epoch up to
  10,000, then replaces 100 random entries per epoch, and adds the loss from epoch 10 with
  batches of 100. Shrunk to this project's ~10-epoch searches: the buffer fills from the end of
  epoch ``memory_start`` (default 1) with ``memory_per_epoch`` (100) samples per epoch up to
  ``memory_size`` (1,000), then replaces a tenth of ``memory_per_epoch`` random entries per
  epoch, and the loss applies as soon as the buffer holds anything (the following epoch).

:func:`hidden_graph_correlation` measures the study's finding: Spearman and Pearson correlation,
over pairs of architectures sampled from the controller, between the L2 distance of the final
hidden states and :func:`graph_distance`, the number of (cell, node, input, op) edges of one
genotype missing from the other (the graph edit distance of two cells over the same nodes when
re-wiring or re-labelling one edge costs 1). The study used 100 samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from itertools import combinations

import numpy as np
import torch
import torch.nn.functional as F

from components.models.nas_cells import SuperNet
from components.models.nas_ops import Genotype
from components.search.darts import (
    DartsConfig,
    Report,
    SearchResult,
    batches,
    rank_candidates,
    shared_weight_step,
    start_shared_search,
)
from components.search.enas_controller import Controller

__all__ = [
    "Controller",
    "EnasConfig",
    "Reinforce",
    "graph_distance",
    "hidden_graph_correlation",
    "search_enas",
]


@dataclass(frozen=True)
class EnasConfig:
    """Controller settings (``search.enas.*``); defaults are ENAS's coefficients.

    Attributes:
        lr: Adam learning rate of the controller (ENAS: 3.5e-4).
        baseline_decay: decay of the reward's moving-average baseline.
        entropy_weight: weight of the sampling entropy added to the reward.
        temperature: logits are divided by it before the tanh.
        tanh_constant: the logits' bound ``c * tanh(.)``.
        hidden: LSTM width.
        controller_steps: REINFORCE steps per epoch.
        aggregate: sampled children per REINFORCE step (their losses are averaged).
        memory: add Adam & Lorraine's memory-buffer reconstruction loss.
        memory_start: the epoch at whose end the buffer starts filling.
        memory_size: the buffer's capacity (architectures).
        memory_per_epoch: samples stored per epoch (a tenth replaced per epoch once full).
        memory_batch: buffer architectures reconstructed per controller step.
        memory_weight: weight of the reconstruction loss.
        probe_samples: architectures sampled at the end to correlate hidden states with graph
            distance (0: skip).
    """

    lr: float = 3.5e-4
    baseline_decay: float = 0.99
    entropy_weight: float = 1e-4
    temperature: float = 5.0
    tanh_constant: float = 2.5
    hidden: int = 64
    controller_steps: int = 10
    aggregate: int = 10
    memory: bool = False
    memory_start: int = 1
    memory_size: int = 1000
    memory_per_epoch: int = 100
    memory_batch: int = 100
    memory_weight: float = 1.0
    probe_samples: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.memory, bool):
            raise ValueError(f"EnasConfig.memory must be true or false, got {self.memory!r}")
        for name in ("hidden", "controller_steps", "aggregate", "memory_size"):
            _check(self, name, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
        for name in ("memory_per_epoch", "memory_batch"):
            _check(self, name, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
        _check(self, "memory_start", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        probe = "probe_samples"
        _check(self, probe, lambda v: isinstance(v, int) and (v == 0 or v >= 3), "0 or >= 3")
        for name in ("lr", "temperature", "tanh_constant"):
            _check(self, name, lambda v: _number(v) and v > 0, "a number > 0")
        for name in ("entropy_weight", "memory_weight"):
            _check(self, name, lambda v: _number(v) and v >= 0, "a number >= 0")
        _check(self, "baseline_decay", lambda v: _number(v) and 0 <= v < 1, "in [0, 1)")

    @classmethod
    def field_names(cls) -> list[str]:
        """The ``search.enas`` keys."""
        return [f.name for f in fields(cls)]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(config: EnasConfig, name: str, ok: Callable[[object], bool], what: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not ok(value):
        raise ValueError(f"EnasConfig.{name} must be {what}, got {value!r}")


class Reinforce:
    """REINFORCE with a moving-average baseline for a :class:`Controller`, with the optional
    memory buffer of earlier samples.

    Args:
        controller: the policy.
        config: learning rate, baseline decay, entropy weight and memory settings.
        generator: draws the samples, the buffer's replacements and its batches.
    """

    def __init__(
        self, controller: Controller, config: EnasConfig, generator: torch.Generator
    ) -> None:
        self.controller, self.config, self.generator = controller, config, generator
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=config.lr)
        self.baseline: float | None = None
        self.memory = torch.empty(0, controller.num_decisions, dtype=torch.long)

    def step(self, reward: Callable[[Genotype], float]) -> dict[str, float]:
        """One controller update on ``aggregate`` sampled children scored by ``reward``."""
        self.controller.train()
        rollout = self.controller(self.config.aggregate, self.generator)
        scores = [reward(g) for g in self.controller.genotypes(rollout.decisions)]
        rewards = torch.tensor(scores) + self.config.entropy_weight * rollout.entropy
        advantages = []
        for value in rewards.tolist():
            decay = self.config.baseline_decay
            self.baseline = (
                value if self.baseline is None else decay * self.baseline + (1 - decay) * value
            )
            advantages.append(value - self.baseline)
        loss = -(rollout.log_prob * torch.tensor(advantages)).mean()
        memory_loss = self.memory_loss() if self.config.memory else torch.zeros(())
        self.optimizer.zero_grad()
        (loss + self.config.memory_weight * memory_loss).backward()
        self.optimizer.step()
        return {
            "reward": float(np.mean(scores)),
            "entropy": rollout.entropy.mean().item(),
            "baseline": float(self.baseline),
            "memory_loss": memory_loss.item(),
        }

    def memory_loss(self) -> torch.Tensor:
        """Teacher-forced NLL per decision of a random buffer batch (0 while it is empty)."""
        if not len(self.memory):
            return torch.zeros(())
        size = min(self.config.memory_batch, len(self.memory))
        rows = torch.randperm(len(self.memory), generator=self.generator)[:size]
        rollout = self.controller(forced=self.memory[rows])
        return -rollout.log_prob.mean() / self.controller.num_decisions

    @torch.no_grad()
    def remember(self) -> None:
        """Store ``memory_per_epoch`` fresh samples, or, once the buffer is full, replace a
        tenth as many random entries (the paper: 1,000 stored, 100 replaced per epoch)."""
        config = self.config
        room = config.memory_size - len(self.memory)
        count = (
            min(room, config.memory_per_epoch) if room else max(1, config.memory_per_epoch // 10)
        )
        fresh = self.controller(count, self.generator).decisions
        if room:
            self.memory = torch.cat([self.memory, fresh])
        else:
            rows = torch.randperm(len(self.memory), generator=self.generator)[:count]
            self.memory[rows] = fresh


def graph_distance(a: Genotype, b: Genotype) -> int:
    """Edges of ``a`` absent from ``b``, as ``(cell, node, input, op)``: how many edges must be
    re-wired or re-labelled to turn one genotype into the other."""

    def edges(g: Genotype) -> set[tuple[str, int, int, str]]:
        return {
            (name, i // 2, src, op)
            for name, cell in (("normal", g.normal), ("reduce", g.reduce))
            for i, (op, src) in enumerate(cell)
        }

    return len(edges(a) - edges(b))


@torch.no_grad()
def hidden_graph_correlation(
    controller: Controller, samples: int, generator: torch.Generator
) -> dict[str, float]:
    """Spearman and Pearson correlation over pairs of ``samples`` sampled architectures between
    the L2 distance of their final hidden states and their :func:`graph_distance`
    (NaN when either is constant)."""
    from scipy import stats  # 0.5 s to import: kept off every trial process's start

    controller.eval()
    rollout = controller(samples, generator)
    genotypes = controller.genotypes(rollout.decisions)
    pairs = list(combinations(range(samples), 2))
    hidden = torch.cdist(rollout.hidden, rollout.hidden)
    h = np.array([hidden[i, j].item() for i, j in pairs])
    g = np.array([graph_distance(genotypes[i], genotypes[j]) for i, j in pairs], dtype=float)
    if np.ptp(h) == 0 or np.ptp(g) == 0:
        return {"spearman": float("nan"), "pearson": float("nan")}
    return {
        "spearman": float(stats.spearmanr(h, g).statistic),
        "pearson": float(stats.pearsonr(h, g).statistic),
    }


@torch.no_grad()
def child_accuracy(model: SuperNet, genotype: Genotype, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of ``genotype``'s path under the shared weights (batch statistics, as in its
    weight steps): ENAS's reward."""
    model.train()
    return (model(x, genotype).argmax(-1) == y).float().mean().item()


def search_enas(
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_val: np.ndarray | torch.Tensor,
    y_val: np.ndarray | torch.Tensor,
    *,
    num_classes: int,
    config: DartsConfig,
    enas: EnasConfig,
    num_candidates: int = 100,
    report: Report | None = None,
) -> SearchResult:
    """ENAS: alternate shared-weight training of sampled children with REINFORCE steps of the
    controller; return the best of ``num_candidates`` samples of the trained controller.

    Args:
        x_train: ``(N, C, H, W)`` float images for the shared-weight training.
        y_train: ``(N,)`` integer labels.
        x_val: images for the rewards and the final ranking.
        y_val: their labels.
        num_classes: number of classes.
        config: the supernet, its op set (``ops``; the controller chooses among all but
            ``none``) and its weight training (the ``alpha_*``, ``order`` and ``sd*`` fields are
            unused), and the seed.
        enas: the controller's settings.
        num_candidates: architectures sampled from the trained controller and ranked.
        report: optional callback receiving each epoch's metrics.

    Returns:
        The candidate with the lowest validation loss; ``history`` has one entry per epoch and
        ends with a ranking entry (with the hidden-state / graph-distance correlations).

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
    controller = Controller(
        config.nodes,
        [op for op in config.ops if op != "none"],  # as random search samples them
        hidden=enas.hidden,
        temperature=enas.temperature,
        tanh_constant=enas.tanh_constant,
    )
    policy = Reinforce(controller, enas, gen)
    val_stream = batches(x_va, y_va, config.batch_size, gen, cycle=True)
    history = []
    for epoch in range(config.epochs):
        losses = []
        for xb, yb in batches(x_tr, y_tr, config.batch_size, gen):
            with torch.no_grad():
                genotype = controller.genotypes(controller(1, gen).decisions)[0]
            losses.append(shared_weight_step(model, w_opt, xb, yb, genotype, config))
        sched.step()
        steps = []
        for _ in range(enas.controller_steps):
            xv, yv = next(val_stream)
            steps.append(policy.step(lambda g, xv=xv, yv=yv: child_accuracy(model, g, xv, yv)))
        if enas.memory and epoch >= enas.memory_start:
            policy.remember()
        entry = _epoch_entry(epoch, losses, steps, model, controller, gen, x_va, y_va)
        history.append(entry)
        if report is not None:
            report(entry)
    with torch.no_grad():
        candidates = controller.genotypes(controller(num_candidates, gen).decisions)
    scored = rank_candidates(model, candidates, x_va, y_va)
    probe = {"spearman": float("nan"), "pearson": float("nan")}
    if enas.probe_samples:
        probe = hidden_graph_correlation(controller, enas.probe_samples, gen)
    history.append(
        {
            "candidates": float(len(scored)),
            "best_val_loss": scored[0][0],
            "best_val_accuracy": child_accuracy(model, scored[0][1], x_va, y_va),
            "worst_val_loss": scored[-1][0],
            "hidden_graph_spearman": probe["spearman"],
            "hidden_graph_pearson": probe["pearson"],
        }
    )
    return SearchResult(genotype=scored[0][1].validate(), history=history)


@torch.no_grad()
def _epoch_entry(epoch, losses, steps, model, controller, gen, x_val, y_val) -> dict[str, float]:
    """The epoch's means, and the validation loss / accuracy of one controller sample under the
    shared weights (the per-epoch progress signal, as random search reports it)."""
    model.train()
    genotype = controller.genotypes(controller(1, gen).decisions)[0]
    logits = model(x_val, genotype)
    entry = {
        "epoch": float(epoch),
        "train_loss": float(np.mean(losses)),
        "val_loss": F.cross_entropy(logits, y_val).item(),
        "val_acc": (logits.argmax(-1) == y_val).float().mean().item(),
    }
    for key in ("reward", "entropy", "baseline", "memory_loss"):
        entry[key] = float(np.mean([s[key] for s in steps])) if steps else float("nan")
    return entry
