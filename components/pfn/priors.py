"""Priors over supervised tasks that a PFN is fitted on (Müller et al., ICLR 2022, sections 4
and 5; reference code automl/TransformersCanDoBayesianInference ``priors/fast_gp.py``,
``priors/mlp.py``).

* :class:`GPPrior`: ``x ~ U(0, 1)^F``; ``y ~ N(0, K + noise I)`` with the RBF kernel
  ``K = outputscale * exp(-|x - x'|^2 / (2 lengthscale^2))``. Each hyperparameter is drawn
  log-uniformly per task from its ``(low, high)`` range (equal ends: fixed, as in the paper's
  comparison with the exact GP; the reference's defaults are 0.1 for all three).
* :class:`BNNPrior`: a random MLP per task (the paper's BNN prior): depth, width and the number
  of used features drawn per batch, weights ``N(0, weight_std^2 / fan_in)`` with tanh,
  ``x ~ N(0, 1)``, Gaussian output noise. For classification the output is cut at random
  quantiles of the task's own values into 2..``max_classes`` classes whose ids are permuted
  (TabPFN's class assigner), so no class id means anything by itself.

A batch is ``(x (B, S, F), y (B, S))``: ``y`` float for regression, int64 classes otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TASKS = ("regression", "classification")


def _log_uniform(bounds, size: int, gen: torch.Generator) -> torch.Tensor:
    low, high = (math.log(float(b)) for b in bounds)
    return torch.exp(low + (high - low) * torch.rand(size, generator=gen, dtype=torch.float64))


def _check_range(owner: str, name: str, bounds) -> None:
    bounds = tuple(bounds)
    if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
        raise ValueError(f"{owner}.{name} must be [low, high] with 0 < low <= high, got {bounds}")


def rbf_kernel(a: torch.Tensor, b: torch.Tensor, lengthscale, outputscale) -> torch.Tensor:
    """RBF kernel ``(..., N, M)`` between ``a`` ``(..., N, F)`` and ``b`` ``(..., M, F)``;
    ``lengthscale``/``outputscale`` broadcast over the leading dimensions."""
    ls = torch.as_tensor(lengthscale, dtype=a.dtype).reshape(-1, 1, 1).squeeze(0)
    os_ = torch.as_tensor(outputscale, dtype=a.dtype).reshape(-1, 1, 1).squeeze(0)
    return os_ * torch.exp(-0.5 * torch.cdist(a, b).square() / ls.square())


@dataclass(frozen=True)
class GPPrior:
    """Gaussian-process regression tasks (see the module docstring)."""

    num_features: int = 1
    lengthscale: tuple[float, float] = (0.2, 0.2)
    outputscale: tuple[float, float] = (1.0, 1.0)
    noise: tuple[float, float] = (0.1, 0.1)
    task: str = "regression"

    def __post_init__(self) -> None:
        for name in ("lengthscale", "outputscale", "noise"):
            _check_range("pfn.gp", name, getattr(self, name))
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.task != "regression":
            raise ValueError(f"pfn.gp.task: the gp prior is for regression, got {self.task!r}")
        if self.num_features < 1:
            raise ValueError(f"pfn.gp.num_features must be >= 1, got {self.num_features}")

    def sample(self, batch: int, seq_len: int, gen: torch.Generator):
        """``(x, y)`` of ``batch`` tasks with ``seq_len`` rows each."""
        x = torch.rand(batch, seq_len, self.num_features, generator=gen, dtype=torch.float64)
        ls, os_, noise = (
            _log_uniform(getattr(self, n), batch, gen)
            for n in ("lengthscale", "outputscale", "noise")
        )
        cov = rbf_kernel(x, x, ls, os_) + noise.reshape(-1, 1, 1) * torch.eye(seq_len)
        z = torch.randn(batch, seq_len, 1, generator=gen, dtype=torch.float64)
        y = (torch.linalg.cholesky(cov) @ z).squeeze(-1)
        return x.float(), y.float()


@dataclass(frozen=True)
class BNNPrior:
    """Tasks from random tanh MLPs (see the module docstring)."""

    max_features: int = 128
    min_features: int = 1
    layers: tuple[int, int] = (1, 3)
    hidden: tuple[int, int] = (8, 32)
    weight_std: tuple[float, float] = (0.5, 2.0)
    noise_std: tuple[float, float] = (0.01, 0.3)
    max_classes: int = 10
    task: str = "classification"

    def __post_init__(self) -> None:
        for name in ("weight_std", "noise_std"):
            _check_range("pfn.bnn", name, getattr(self, name))
        for name in ("layers", "hidden"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"pfn.bnn.{name} must be [low, high] with 1 <= low <= high")
        if not 1 <= self.min_features <= self.max_features:
            raise ValueError("pfn.bnn.min_features must be in [1, max_features]")
        if self.max_classes < 2:
            raise ValueError(f"pfn.bnn.max_classes must be >= 2, got {self.max_classes}")
        if self.task not in TASKS:
            raise ValueError(f"pfn.bnn.task must be one of {', '.join(TASKS)}, got {self.task!r}")

    def _randint(self, bounds, gen) -> int:
        return int(torch.randint(bounds[0], bounds[1] + 1, (1,), generator=gen))

    def sample(self, batch: int, seq_len: int, gen: torch.Generator):
        """``(x, y)`` of ``batch`` tasks with ``seq_len`` rows and the same feature count."""
        features = self._randint((self.min_features, self.max_features), gen)
        depth, width = self._randint(self.layers, gen), self._randint(self.hidden, gen)
        x = torch.randn(batch, seq_len, features, generator=gen)
        h = x
        for layer in range(depth + 1):
            fan_out = width if layer < depth else 1
            std = _log_uniform(self.weight_std, batch, gen).float().reshape(-1, 1, 1)
            w = torch.randn(batch, h.shape[-1], fan_out, generator=gen) * std
            h = h @ (w / math.sqrt(h.shape[-1]))
            h = torch.tanh(h) if layer < depth else h
        noise = _log_uniform(self.noise_std, batch, gen).float().reshape(-1, 1)
        y = h.squeeze(-1) + noise * torch.randn(batch, seq_len, generator=gen)
        if self.task == "regression":
            return x, y
        return x, self._classes(y, gen)

    def _classes(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Cut each task's values at random quantiles into k classes, then permute the ids."""
        batch, seq_len = y.shape
        k = self._randint((2, self.max_classes), gen)
        ranks = torch.rand(batch, k - 1, generator=gen).mul(seq_len).long().clamp(0, seq_len - 1)
        borders = torch.sort(y, dim=1).values.gather(1, ranks).sort(1).values
        classes = torch.searchsorted(borders.contiguous(), y.contiguous())
        perm = torch.argsort(torch.rand(batch, k, generator=gen), dim=1)
        return perm.gather(1, classes)


def build_prior(name: str, options: dict):
    """The prior ``name`` (``gp`` or ``bnn``) with ``options`` (its config block)."""
    priors = {"gp": GPPrior, "bnn": BNNPrior}
    if name not in priors:
        raise ValueError(f"pfn.prior must be one of {', '.join(priors)}, got {name!r}")
    try:
        return priors[name](**options)
    except TypeError as err:
        raise ValueError(f"pfn.{name}: {err}".replace("__init__()", "")) from err
