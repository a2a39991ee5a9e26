"""Post-hoc attributions fanned out over Ray tasks: one chunk of samples per task."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.explain.posthoc.stage import Attribute, local_attribute


def ray_attribute(
    checkpoint: Path,
    num_tasks: int,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Attribute:
    """``attribute_fn(method, x, groups, config)`` fanned out over ``num_tasks`` Ray tasks, one
    chunk of samples (and of their groups, when each has its own) each; every task loads the
    checkpoint itself (it must be on storage all nodes can read).

    Joins or starts Ray as :func:`components.training.ray_runtime.ensure_ray` does with
    ``address`` and ``num_cpus``.
    """
    import ray

    from components.training.ray_runtime import ensure_ray

    ensure_ray(address, num_cpus)
    remote = ray.remote(num_cpus=1)(_attribute_chunk)

    def attribute_fn(method: str, x, groups, config):
        parts = np.array_split(np.arange(len(x)), min(num_tasks, len(x)))
        refs = [
            remote.remote(
                str(checkpoint), config, method, x[p], groups[p] if len(groups) > 1 else groups
            )
            for p in parts
        ]
        return np.concatenate(ray.get(refs))

    return attribute_fn


def _attribute_chunk(checkpoint: str, config, method: str, x, groups):
    """Ray task body: load the model and explain one chunk of samples."""
    from components.training.checkpoint import load_model

    model, _ = load_model(checkpoint)
    return local_attribute(model.eval())(method, x, groups, config)
