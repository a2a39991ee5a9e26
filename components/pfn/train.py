"""The pure PFN training loop (Müller et al., ICLR 2022, Algorithm 1): draw a batch of tasks
from the prior, split each into context and queries at a uniformly drawn position, and
minimise the queries' negative log-likelihood (cross-entropy for classes, the bar
distribution's for regression). It knows nothing about Ray: ``report`` receives the metrics and
the resumable state every ``checkpoint_every`` steps (:mod:`components.training.pfn_ray`
passes Ray Train's; tests a list's ``append``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from components.models.pfn import PFNTransformer, prepare_features
from components.pfn.bar_distribution import bar_nll, bucket_borders
from components.pfn.config import PFNTrainConfig

Report = Callable[[dict, dict | None], None]
_BORDER_SAMPLES = 64  # batches of prior targets the bucket borders are estimated from


def build_network(cfg: PFNTrainConfig) -> PFNTransformer:
    """The untrained network of ``cfg`` (seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    return PFNTransformer(**cfg.architecture())


def network_input(x: torch.Tensor, num_context: int, task: str, max_features: int):
    """What the network reads: classification rows standardised by the context and padded
    (:func:`prepare_features`); regression rows as drawn (padded, e.g. ``x`` in ``[0, 1]``)."""
    return prepare_features(x, num_context if task == "classification" else 0, max_features)


def prior_borders(cfg: PFNTrainConfig) -> torch.Tensor | None:
    """Bar-distribution borders from the prior's targets (None for classification)."""
    prior = cfg.build_prior()
    if prior.task != "regression":
        return None
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    ys = [prior.sample(cfg.batch_size, cfg.seq_len, gen)[1] for _ in range(_BORDER_SAMPLES)]
    return bucket_borders(torch.cat(ys), cfg.buckets)


def query_loss(net, x, y, num_context: int, task: str, borders, width: int) -> torch.Tensor:
    """Mean NLL of the queries ``y[:, num_context:]`` given the context (rows padded to
    ``width`` features)."""
    out = net(network_input(x, num_context, task, width), y[:, :num_context])
    target = y[:, num_context:]
    if task == "classification":
        return nn.functional.cross_entropy(out.flatten(0, 1), target.flatten())
    return bar_nll(out, target, borders).mean()


def lr_factor(step: int, cfg: PFNTrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    done = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


@torch.no_grad()
def held_out_loss(net, cfg: PFNTrainConfig, borders) -> float:
    """The loss on ``eval_tasks`` fixed prior tasks, context sizes spread over the range."""
    prior, gen = cfg.build_prior(), torch.Generator().manual_seed(cfg.seed + 2)
    losses = []
    for start in range(0, cfg.eval_tasks, cfg.batch_size):
        x, y = prior.sample(min(cfg.batch_size, cfg.eval_tasks - start), cfg.seq_len, gen)
        num_context = (start // cfg.batch_size * 7919) % cfg.seq_len
        width = net.x_encoder.in_features
        losses.append(float(query_loss(net, x, y, num_context, prior.task, borders, width)))
    return sum(losses) / len(losses)


def train_pfn(
    net: PFNTransformer,
    cfg: PFNTrainConfig,
    *,
    report: Report,
    resume: dict | None = None,
    train_module: nn.Module | None = None,
    rank: int = 0,
) -> list[dict]:
    """Fit ``net`` on tasks from ``cfg``'s prior; returns the reported rows.

    Args:
        net: the network (weights already restored when resuming).
        cfg: the run's configuration.
        report: called every ``checkpoint_every`` steps and at the end with the metrics row
            and the resumable state (``net``, ``optimizer``, ``step``, ``generator``,
            ``borders``, ``history``).
        resume: such a state to continue from.
        train_module: what the gradient steps run through (DDP-wrapped ``net``).
        rank: this worker's rank; it offsets the prior's seed so workers draw other tasks.
    """
    module = train_module or net
    prior, task = cfg.build_prior(), cfg.task
    borders = prior_borders(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    gen = torch.Generator().manual_seed(cfg.seed * 1009 + 3 + rank)
    step, history = 0, []
    if resume:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        gen.set_state(resume["generator"])
        step, history = int(resume["step"]), list(resume["history"])
    losses, start = [], time.perf_counter()
    while step < cfg.steps:
        x, y = prior.sample(cfg.batch_size, cfg.seq_len, gen)
        num_context = int(torch.randint(0, cfg.seq_len, (1,), generator=gen))
        loss = query_loss(module, x, y, num_context, task, borders, net.x_encoder.in_features)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(float(loss.detach()))
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            row = {
                "step": step,
                "train_loss": sum(losses) / len(losses),
                "val_loss": held_out_loss(net, cfg, borders),
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            state = {
                "net": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "step": step,
                "history": history,
                "borders": borders,
            }
            report(row, state)
            losses, start = [], time.perf_counter()
    return history
