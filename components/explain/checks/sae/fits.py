"""Training several sparse dictionaries at once: one Ray task per fit, or in-process for one.

Each fit is independent (a kind and an ``l1`` on one site's activations), so the fits fan out
as Ray tasks of one CPU each, the activations put in the object store once per site; a single
fit runs in the calling process (starting Ray would cost more than it saves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from components.explain.checks.sae.dictionary import SparseDictionary, fit_dictionary


@dataclass(frozen=True)
class Fit:
    """One dictionary to train: ``kind`` with ``l1`` on the activations of site ``site``."""

    kind: str
    l1: float
    site: str


def fit_all(
    fits: Sequence[Fit],
    activations: Mapping[str, Mapping[str, np.ndarray]],
    *,
    expansion: int,
    epochs: int,
    seed: int,
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
) -> list[SparseDictionary]:
    """Train every fit on ``activations[fit.site]`` (``inputs``, ``outputs`` rows), in order.

    Args:
        fits: what to train.
        activations: per site, its ``inputs`` and ``outputs`` rows.
        expansion, epochs, seed: as :func:`fit_dictionary`'s.
        ray_address, ray_num_cpus: the Ray to join or start when there is more than one fit.
    """
    options = {"expansion": expansion, "epochs": epochs, "seed": seed}
    if len(fits) == 1:
        (fit,) = fits
        rows = activations[fit.site]
        return [fit_dictionary(fit.kind, *_source(fit, rows), l1=fit.l1, **options)]
    import ray

    from components.training.ray_runtime import ensure_ray

    ensure_ray(ray_address, ray_num_cpus)
    refs = {
        site: (ray.put(rows["inputs"]), ray.put(rows["outputs"]))
        for site, rows in activations.items()
        if any(f.site == site for f in fits)
    }
    remote = ray.remote(num_cpus=1)(_fit_in_task)
    return ray.get([remote.remote(fit, *_source(fit, refs[fit.site]), options) for fit in fits])


def _source(fit: Fit, rows):
    """``(inputs, targets)`` of a fit: an SAE reconstructs the outputs, a transcoder maps the
    inputs to them (``rows``: a site's rows, or their object refs as a pair)."""
    inputs, outputs = (rows["inputs"], rows["outputs"]) if isinstance(rows, Mapping) else rows
    return (outputs, outputs) if fit.kind == "sae" else (inputs, outputs)


def _fit_in_task(fit: Fit, inputs, outputs, options: dict) -> SparseDictionary:
    import torch

    torch.set_num_threads(1)  # one CPU per task: the fits run side by side
    return fit_dictionary(fit.kind, inputs, outputs, l1=fit.l1, **options)
