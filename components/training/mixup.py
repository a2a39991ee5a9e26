"""MixUp and label smoothing: training batches against soft targets (``train.mixup``,
``train.label_smoothing``).

MixUp (Zhang et al., ICLR 2018), as the "Scaling MLPs" reference code applies it (FFCV's
``ImageMixup`` / ``LabelMixup`` with ``same_lambda=True``): one ``lam ~ Beta(alpha, alpha)`` per
batch and a random permutation ``pi`` of the batch,

    x_i <- lam x_i + (1 - lam) x_pi(i),    q_i <- lam q_i + (1 - lam) q_pi(i),

where ``q_i`` is sample ``i``'s target distribution (one-hot ``y_i``). Label smoothing with
``eps`` then trains against ``(1 - eps) q_i + eps / C``: torch's ``label_smoothing``, and, since
both are linear in ``q``, the same loss as the reference code's
``lam CE_eps(p, y) + (1 - lam) CE_eps(p, y_pi)``. The model's cross-entropy trains against the
result through :meth:`components.models.base.SennModel.soft_targets`; validation keeps the
hard labels.
"""

from __future__ import annotations

import torch


def mixup(
    x: torch.Tensor, q: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix every sample (input and target distribution) with sample ``perm[i]`` by ``lam``."""
    return lam * x + (1 - lam) * x[perm], lam * q + (1 - lam) * q[perm]


def smooth_labels(q: torch.Tensor, eps: float) -> torch.Tensor:
    """``(1 - eps) q + eps / C`` for target distributions ``q`` ``(N, C)``."""
    return (1 - eps) * q + eps / q.shape[1]


class BatchMix:
    """Each training batch's mixed input and soft targets.

    Args:
        num_classes: ``C``, the width of the targets.
        alpha: MixUp's Beta parameter (0: no mixing).
        smoothing: label smoothing ``eps`` in ``[0, 1)``.
    """

    def __init__(self, num_classes: int, alpha: float, smoothing: float) -> None:
        self.num_classes, self.alpha, self.smoothing = num_classes, alpha, smoothing
        self.beta = torch.distributions.Beta(alpha, alpha) if alpha > 0 else None

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, q: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x', q')`` for a batch with labels ``y`` (and target distributions ``q``, if the
        run already trains against soft targets); draws from torch's global generator, which
        the fit loop seeds per epoch."""
        if q is None:
            q = torch.nn.functional.one_hot(y, self.num_classes).to(x.dtype)
        if self.beta is not None:
            lam = float(self.beta.sample())
            x, q = mixup(x, q, lam, torch.randperm(len(x), device=x.device))
        if self.smoothing > 0:
            q = smooth_labels(q, self.smoothing)
        return x, q


def batch_mix(cfg, num_classes: int) -> BatchMix | None:
    """The run's :class:`BatchMix` (``cfg``: a ``TrainConfig``), ``None`` when both are off."""
    if cfg.mixup == 0 and cfg.label_smoothing == 0:
        return None
    return BatchMix(num_classes, cfg.mixup, cfg.label_smoothing)
