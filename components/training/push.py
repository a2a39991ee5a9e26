"""Prototype projection ("push", ProtoPNet) over the training data of every rank."""

from __future__ import annotations

import torch

from components.models.base import PushCandidates
from components.training.steps import unwrap


@torch.no_grad()
def push_prototypes(model, data, device: torch.device) -> PushCandidates:
    """Project every prototype onto its nearest training patch of its class.

    Args:
        model: a (possibly DDP-wrapped) prototype model with ``push_candidates``/``apply_push``.
        data: iterable of ``(x, y, sample_ids)`` over this rank's training rows, ids global.
        device: where the model runs.

    Returns:
        The applied candidates (identical on every rank, so replicas stay in sync).
    """
    core = unwrap(model)
    was_training = core.training
    core.eval()
    best = None
    for x, y, ids in data:
        found = core.push_candidates(x.to(device), y.to(device), ids.to(device))
        best = found if best is None else best.merge(found)
    best = _merge_across_ranks(best)
    core.apply_push(best)
    core.train(was_training)
    return best


def _merge_across_ranks(local: PushCandidates) -> PushCandidates:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    gathered = {}
    for name in ("distance", "vector", "sample", "location"):
        tensor = getattr(local, name).contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        gathered[name] = parts
    merged = None
    for rank in range(dist.get_world_size()):
        part = PushCandidates(**{name: gathered[name][rank] for name in gathered})
        merged = part if merged is None else merged.merge(part)
    return merged
