"""ProtoCL: prototypical Bayesian continual learning, exemplar-free variant.

Implements the "Prototypical Bayesian Continual Learning" baseline (ProtoCL) of Kessler, Cobb,
Rudner, Zohren and Roberts, "On Sequential Bayesian Inference for Continual Learning", Entropy
25(6):884, 2023 (Sec. 7), itself built on PCOC (Harrison et al., "Continuous Meta-Learning
without Tasks", NeurIPS 2020).

Model. An embedding ``z = f(x)`` (the body of :class:`EmbeddingNet`, L2-normalised) and, for
each class ``c``, a Gaussian class-conditional ``p(z | y=c, mu_c) = N(z; mu_c, s2 I)`` with a
known diagonal observation variance ``s2`` (``obs_var``) and a conjugate prior
``mu_c ~ N(m0, I / l0)`` (``prior_mean``, ``prior_precision``); the class probabilities have a
Dirichlet prior ``Dir(a0, ..., a0)`` (``dirichlet_concentration``). Given the ``n_c``
embeddings of class ``c`` with sum ``S_c``, the posteriors are closed form
(:class:`GaussianDirichletPosterior`):

- ``l_c = l0 + n_c / s2`` (posterior precision of ``mu_c``, per dimension),
  ``m_c = (l0 m0 + S_c / s2) / l_c`` (posterior mean);
- ``a_c = a0 + n_c`` (Dirichlet).

The posterior predictive is
``log p(y=c | z) = log N(z; m_c, (1/l_c + s2) I) + log(a_c / sum_k a_k) - log Z(z)``, normalised
over the classes seen so far. The posteriors after task ``t`` are the priors of task ``t+1``:
with disjoint classes per task an update only fills in the new classes' statistics, and two
updates equal one update on the union (tested).

Loss of a mini-batch (the base class's fit loop and schedule):
``-mean_i log p(y_i | z_i)`` (coefficient 1) ``+ distill_weight * mean_i ||z_i - z_i^old||^2``
(coefficient 30 by default), where ``z^old`` is the normalised embedding by a frozen copy of the
body taken at the start of the task (at task 0, the initialisation). In the first term the
current task's class posteriors are recomputed from *all* of the task's samples at the current
embedding before each step (detached); old classes keep the posterior they had at the end of
their task. After the task, the posteriors of its classes are updated with its samples at the
final embedding. Prediction: argmax of the posterior predictive over the seen classes.

Coreset: none by default (``coreset_size=0``, no sample stored). ``coreset_size=k`` keeps ``k``
random samples per task and adds them to every later task's training set (the paper's setting),
for measurement only.

Measured on split digits (5 x 2 classes), class order and ``seed`` 0 / 1 / 2, final average
accuracy (forgetting):

- defaults (:attr:`ProtoCLLearner.DEFAULT_CONFIG`, no coreset): 0.896 (0.074) / 0.899 (0.042) /
  0.907 (0.051);
- ``distill_weight=0``, i.e. the paper's loss without its coreset: 0.352 (0.81) / 0.233 (0.95) /
  0.348 (0.82): the embedding drifts and old classes' posteriors go stale, so the issue floor
  (>= 0.80, forgetting <= 0.20) cannot be met by plain ProtoCL without stored samples;
- ``distill_weight=0, coreset_size=20`` (the paper's setting, 100 stored samples in all):
  0.937 (0.079) / 0.951 (0.047) / 0.948 (0.065);
- defaults with ``LearnerConfig()`` instead of ``DEFAULT_CONFIG`` (hidden 128, lr 0.1): 0.695 /
  0.750 / 0.732: below the floor (training on 2 classes at lr 0.1 collapses the embedding).

Hyperparameters. From the released code (``skezle/bayes_cl_posterior``, ``protocl/``):
``s2 = 0.05`` (``model.sigma_eps``), ``log a0 = 10`` (``model.dirichlet_scale``, not learned),
prior precision ``exp(0) = 1`` (``model.Linv_init``). Chosen here: ``m0 = 0``,
``distill_weight = 30`` (measured with ``a0 = 1``: 10 gives 0.848 / 0.824 / 0.874 with
forgetting up to 0.18, 100 gives 0.880 / 0.847 / 0.847), and ``DEFAULT_CONFIG`` (hidden 512,
embedding 256, learning rates 10x below ``LearnerConfig()``).

Deviations from the paper and its code, with their reasons:

- No coreset by default (the paper replays one): the issue asks for exemplar-free methods.
- The embedding distillation term, absent from the paper: without stored samples it is what
  keeps old classes' posteriors valid (see the numbers above). It is the exemplar-free
  embedding distillation of Yu et al. ("Semantic Drift Compensation", CVPR 2020, "E-LwF").
- L2-normalised embeddings (the paper uses the raw encoder output): with SGD at this project's
  learning rates the raw-embedding Gaussian loss with ``s2 = 0.05`` diverged (0.10 accuracy).
- Prior ``m0 = 0`` and ``l0`` shared by all classes and dimensions instead of drawn at random
  (``Q ~ N(0, 1)``, ``log l0 ~ N(0, 1)`` in the code): ``n_c / s2 ~ 2500`` swamps the prior
  anyway, and a deterministic prior makes the closed form testable.
- The task posterior in the loss is recomputed from the whole task at the current embedding
  rather than accumulated over stale mini-batches as in PCOC's recursive update, so that it is
  exactly the posterior kept after the task.
- This project's MLP body, SGD and infinite learning-rate schedule instead of the paper's
  encoders with Adam (lr 0.02) and step decay; ``DEFAULT_CONFIG`` instead of the shared
  ``LearnerConfig()``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from components.continual.learners import Learner, LearnerConfig

__all__ = ["GaussianDirichletPosterior", "ProtoCLLearner", "log_joint"]


@dataclass
class GaussianDirichletPosterior:
    """Conjugate posteriors of the class means (Normal, diagonal) and class probabilities.

    Kept as sufficient statistics so updates are exact and order-free: ``counts[c]`` samples of
    class ``c`` with embedding sum ``sums[c]``.

    Attributes:
        sums: ``(num_classes, dim)`` embedding sums per class.
        counts: ``(num_classes,)`` sample counts per class.
        obs_var: known observation variance ``s2`` of every embedding dimension.
        prior_precision: precision ``l0`` of the Normal prior on each class mean.
        prior_mean: mean ``m0`` of that prior (a scalar, the same for every dimension).
        dirichlet_concentration: ``a0`` of the symmetric Dirichlet prior.
    """

    num_classes: int
    dim: int
    obs_var: float
    prior_precision: float
    prior_mean: float = 0.0
    dirichlet_concentration: float = 1.0
    sums: np.ndarray = field(init=False)
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sums = np.zeros((self.num_classes, self.dim))
        self.counts = np.zeros(self.num_classes)

    def copy(self) -> GaussianDirichletPosterior:
        """An independent copy (same prior, copied statistics)."""
        other = copy.copy(self)
        other.sums, other.counts = self.sums.copy(), self.counts.copy()
        return other

    def update(self, z: np.ndarray, y: np.ndarray) -> None:
        """Add the embeddings ``z`` ``(N, dim)`` with labels ``y`` to the statistics."""
        np.add.at(self.sums, np.asarray(y), np.asarray(z, dtype=np.float64))
        self.counts += np.bincount(np.asarray(y), minlength=self.num_classes)

    def precision(self) -> np.ndarray:
        """Posterior precision ``l_c = l0 + n_c / s2`` of each class mean, ``(num_classes,)``."""
        return self.prior_precision + self.counts / self.obs_var

    def mean(self) -> np.ndarray:
        """Posterior mean ``m_c = (l0 m0 + S_c / s2) / l_c``, ``(num_classes, dim)``."""
        natural = self.prior_precision * self.prior_mean + self.sums / self.obs_var
        return natural / self.precision()[:, None]

    def predictive_var(self) -> np.ndarray:
        """Variance ``1 / l_c + s2`` of the posterior predictive of each class, per dimension."""
        return 1.0 / self.precision() + self.obs_var

    def concentration(self) -> np.ndarray:
        """Dirichlet posterior ``a_c = a0 + n_c``."""
        return self.dirichlet_concentration + self.counts


def log_joint(
    z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, concentration: torch.Tensor
) -> torch.Tensor:
    """``log N(z; m_c, var_c I) + log(a_c / sum a)`` for every sample and class, ``(N, C)``.

    ``mean`` is ``(C, D)``, ``var`` and ``concentration`` are ``(C,)`` over the classes scored.
    """
    d = z.shape[1]
    sq = (z**2).sum(1, keepdim=True) - 2 * z @ mean.T + (mean**2).sum(1)[None, :]
    log_lik = -0.5 * (sq / var + d * torch.log(2 * math.pi * var))
    return log_lik + torch.log(concentration / concentration.sum())


class ProtoCLLearner(Learner):
    """ProtoCL (Kessler et al. 2023): Bayesian class prototypes on a learned embedding.

    See the module docstring for the model, the loss and the deviations from the paper. With
    ``config=None`` the learner uses :attr:`DEFAULT_CONFIG` (wider net, 10x smaller learning
    rates than ``LearnerConfig()``), the setting measured to meet the issue floor.

    Args:
        config: network, optimiser and schedule (``None``: :attr:`DEFAULT_CONFIG`).
        obs_var: known observation variance ``s2`` of each (L2-normalised) embedding dimension.
        prior_precision: precision ``l0`` of the Normal prior on each class mean.
        prior_mean: mean ``m0`` of that prior (the same for every dimension).
        dirichlet_concentration: symmetric Dirichlet prior ``a0`` on the class probabilities.
        distill_weight: coefficient of the embedding distillation term (0: plain ProtoCL).
        coreset_size: samples kept per task and replayed later (0: none, exemplar-free).

    Raises:
        ValueError: a non-positive ``obs_var``, ``prior_precision`` or
            ``dirichlet_concentration``, a negative ``distill_weight``, a non-finite
            ``prior_mean`` or a ``coreset_size`` that is not an integer >= 0.
    """

    method = "protocl"
    DEFAULT_CONFIG = LearnerConfig(
        hidden_dim=512, embedding_dim=256, max_lr=0.01, const_lr=0.005, min_lr=1e-4
    )

    def __init__(
        self,
        config: LearnerConfig | None = None,
        *,
        obs_var: float = 0.05,
        prior_precision: float = 1.0,
        prior_mean: float = 0.0,
        dirichlet_concentration: float = math.exp(10.0),
        distill_weight: float = 30.0,
        coreset_size: int = 0,
    ) -> None:
        _check_kwargs(obs_var, prior_precision, prior_mean, dirichlet_concentration, distill_weight)
        if isinstance(coreset_size, bool) or int(coreset_size) != coreset_size or coreset_size < 0:
            raise ValueError(f"coreset_size must be an integer >= 0, got {coreset_size!r}")
        super().__init__(config or self.DEFAULT_CONFIG)
        c = self.config
        self.posterior = GaussianDirichletPosterior(
            c.num_classes,
            c.embedding_dim,
            obs_var=float(obs_var),
            prior_precision=float(prior_precision),
            prior_mean=float(prior_mean),
            dirichlet_concentration=float(dirichlet_concentration),
        )
        self.distill_weight = float(distill_weight)
        self.coreset_size = int(coreset_size)
        self._coreset: list[tuple[np.ndarray, np.ndarray]] = []
        self._task: tuple[torch.Tensor, np.ndarray, list[int]] | None = None
        self._teacher: nn.Module | None = None

    # -- embedding ------------------------------------------------------------------------------

    def _z(self, x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """L2-normalised embedding of ``x`` by ``net`` (default: the current body)."""
        return nn.functional.normalize((net or self.net.body)(x), dim=1)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """L2-normalised embedding of ``x`` (float64, ``(N, embedding_dim)``)."""
        z = super().embed(x)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    # -- training -------------------------------------------------------------------------------

    def _before_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        self._task = (torch.from_numpy(x), y, classes)
        if self.distill_weight:  # the embedding as it enters the task (task 0: the init)
            self._teacher = copy.deepcopy(self.net.body).eval().requires_grad_(False)

    def _train_set(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._coreset:
            return x, y
        xs, ys = zip(*self._coreset, strict=True)
        return np.concatenate([x, *xs]), np.concatenate([y, *ys])

    def _task_posterior(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posterior mean, predictive variance and concentration of every class, the current
        task's classes recomputed from all its samples at the current embedding (detached)."""
        x, y, classes = self._task
        with torch.no_grad():
            z = self._z(x).double().numpy()
        post = self.posterior.copy()
        post.sums[classes], post.counts[classes] = 0.0, 0.0
        post.update(z, y)
        arrays = (post.mean(), post.predictive_var(), post.concentration())
        return tuple(torch.from_numpy(a).float() for a in arrays)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
        """``-log p(y | z)`` over the seen classes, plus the embedding distillation term."""
        mean, var, conc = self._task_posterior()
        z = self._z(x)
        scores = log_joint(z, mean, var, conc).masked_fill(unseen, -math.inf)
        loss = nn.functional.cross_entropy(scores, y)
        if self._teacher is not None:
            with torch.no_grad():
                target = self._z(x, self._teacher)
            loss = loss + self.distill_weight * ((z - target) ** 2).sum(1).mean()
        return loss

    def _after_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        self.posterior.update(self.embed(x), y)
        self._task = self._teacher = None
        if self.coreset_size:
            keep = self._rng.choice(len(x), min(self.coreset_size, len(x)), replace=False)
            self._coreset.append((x[keep], y[keep]))

    # -- prediction -----------------------------------------------------------------------------

    def log_predictive(self, x: np.ndarray) -> np.ndarray:
        """``log p(y=c | x)`` over the seen classes (``-inf`` for unseen), ``(N, num_classes)``."""
        if not self.seen:
            raise RuntimeError("log_predictive called before any task was learned")
        post = self.posterior
        arrays = (self.embed(x), post.mean(), post.predictive_var(), post.concentration())
        scores = log_joint(*(torch.from_numpy(a) for a in arrays))
        scores[:, torch.from_numpy(self._unseen_mask())] = -math.inf
        return torch.log_softmax(scores, dim=1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Argmax of the posterior predictive over the classes seen so far."""
        return self.log_predictive(x).argmax(axis=1).astype(np.int64)


def _check_kwargs(
    obs_var: float,
    prior_precision: float,
    prior_mean: float,
    dirichlet_concentration: float,
    distill_weight: float,
) -> None:
    """Raise ``ValueError`` naming the first out-of-range ProtoCL argument."""
    positive = {
        "obs_var": obs_var,
        "prior_precision": prior_precision,
        "dirichlet_concentration": dirichlet_concentration,
    }
    for name, value in positive.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not math.isfinite(prior_mean):
        raise ValueError(f"prior_mean must be finite, got {prior_mean!r}")
    if not (math.isfinite(distill_weight) and distill_weight >= 0):
        raise ValueError(f"distill_weight must be a finite number >= 0, got {distill_weight!r}")
