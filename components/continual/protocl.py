"""ProtoCL: prototypical Bayesian continual learning, exemplar-free.

Implements the "Prototypical Bayesian Continual Learning" baseline (ProtoCL) of Kessler, Cobb,
Rudner, Zohren and Roberts, "On Sequential Bayesian Inference for Continual Learning", Entropy
25(6):884, 2023 (Sec. 7), itself built on PCOC (Harrison et al., "Continuous meta-learning
without tasks", NeurIPS 2020).

Model. An embedding ``z = f_theta(x)`` (the body of :class:`EmbeddingNet`) and, for each class
``c``, a Gaussian class-conditional ``p(z | y=c, mu_c) = N(z; mu_c, s2 I)`` with a known diagonal
observation variance ``s2`` (``obs_var``) and a conjugate prior ``mu_c ~ N(m0, I / l0)``
(``prior_mean``, ``prior_precision``); the class probabilities have a Dirichlet prior
``Dir(a0, ..., a0)`` (``dirichlet_concentration``). Given the ``n_c`` embeddings of class ``c``
with sum ``S_c``, the posteriors are closed form:

- ``l_c = l0 + n_c / s2`` (posterior precision of ``mu_c``, per dimension),
  ``m_c = (l0 m0 + S_c / s2) / l_c`` (posterior mean);
- ``a_c = a0 + n_c`` (Dirichlet).

The posterior predictive of a sample is
``log p(y=c | z) = log N(z; m_c, (1/l_c + s2) I) + log(a_c / sum_{k seen} a_k) - log Z(z)``,
normalised over the classes seen so far. The posteriors after task ``t`` are the priors of task
``t+1``: with disjoint classes per task this only fills in the new classes' statistics, and two
updates equal one update on the union (tested).

Training (per task): the loss of a mini-batch is the negative log posterior predictive of its
labels, ``-mean_i log p(y_i | z_i)`` (coefficient 1, no other term). The current task's class
posteriors are recomputed from *all* of the task's samples at the current embedding before each
step (detached); old classes keep the posterior they had at the end of their task. After the task
the posteriors of its classes are updated with its samples at the final embedding. Prediction is
the argmax of the posterior predictive over the seen classes.

No coreset: by default no sample is stored (``coreset_size=0``); ``coreset_size > 0`` keeps that
many random samples per task and replays them in later tasks' loss (the paper's setting), only to
measure its effect.

Deviations from the paper and its released code (``skezle/bayes_cl_posterior``, ``protocl/``),
with their reasons:

- No coreset by default (the paper replays a coreset): the issue asks for exemplar-free methods.
- Prior ``m0 = 0`` and ``l0 = prior_precision`` shared by all classes and dimensions, not drawn
  at random (the code draws ``Q ~ N(0, 1)``, ``log l0 ~ N(0, 1)``); with ~125 samples a class and
  ``s2 = 0.05`` the data term ``n_c / s2 ~ 2500`` swamps the prior anyway, and a deterministic
  prior makes the closed form testable.
- The task posterior used in the loss is recomputed from the whole task at the current embedding
  (detached) rather than accumulated over stale mini-batches as in PCOC's recursive update, so
  that it is exactly the posterior the model will keep after the task.
- The body of :class:`EmbeddingNet` (shared with the other learners), SGD with the project's
  infinite learning-rate schedule rather than Adam with step decay, and the hyperparameters below
  (chosen so the issue floor holds; the code's defaults are ``s2 = 0.05``, embedding 32,
  ``log a0 = 10``, Adam lr 0.02).

Defaults (measured on split digits, see the tests): ``obs_var=0.05`` and ``prior_precision=1.0``
(from the code), ``dirichlet_concentration=1.0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from components.continual.learners import Learner, LearnerConfig

__all__ = ["GaussianDirichletPosterior", "ProtoCLLearner"]


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

    See the module docstring for the model, the loss and the deviations from the paper.

    Args:
        config: network, optimiser and schedule.
        obs_var: known observation variance ``s2`` of the embedding (> 0).
        prior_precision: precision ``l0`` of the prior on each class mean (> 0).
        prior_mean: mean ``m0`` of that prior.
        dirichlet_concentration: symmetric Dirichlet prior ``a0`` (> 0).
        coreset_size: samples kept per task and replayed later (0: none, exemplar-free).
    """

    method = "protocl"

    def __init__(
        self,
        config: LearnerConfig | None = None,
        *,
        obs_var: float = 0.05,
        prior_precision: float = 1.0,
        prior_mean: float = 0.0,
        dirichlet_concentration: float = 1.0,
        coreset_size: int = 0,
    ) -> None:
        for name, value in (
            ("obs_var", obs_var),
            ("prior_precision", prior_precision),
            ("dirichlet_concentration", dirichlet_concentration),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not math.isfinite(prior_mean):
            raise ValueError(f"prior_mean must be finite, got {prior_mean!r}")
        if int(coreset_size) != coreset_size or coreset_size < 0:
            raise ValueError(f"coreset_size must be an integer >= 0, got {coreset_size!r}")
        super().__init__(config)
        c = self.config
        self.posterior = GaussianDirichletPosterior(
            c.num_classes,
            c.embedding_dim,
            obs_var=float(obs_var),
            prior_precision=float(prior_precision),
            prior_mean=float(prior_mean),
            dirichlet_concentration=float(dirichlet_concentration),
        )
        self.coreset_size = int(coreset_size)
        self._coreset_x: list[np.ndarray] = []
        self._coreset_y: list[np.ndarray] = []
        self._task: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None

    # -- training -------------------------------------------------------------------------------

    def _before_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        self._task = (torch.from_numpy(x), torch.from_numpy(y), classes)

    def _train_set(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._coreset_x:
            return x, y
        return np.concatenate([x, *self._coreset_x]), np.concatenate([y, *self._coreset_y])

    def _task_posterior(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Posterior mean, predictive variance and concentration of every seen class, with the
        current task's classes recomputed from all its samples at the current embedding."""
        x, y, classes = self._task
        with torch.no_grad():
            z = self.net.embed(x).double().numpy()
        post = GaussianDirichletPosterior(
            self.posterior.num_classes,
            self.posterior.dim,
            self.posterior.obs_var,
            self.posterior.prior_precision,
            self.posterior.prior_mean,
            self.posterior.dirichlet_concentration,
        )
        post.sums, post.counts = self.posterior.sums.copy(), self.posterior.counts.copy()
        post.sums[classes], post.counts[classes] = 0.0, 0.0
        post.update(z, y.numpy())
        return tuple(
            torch.from_numpy(a).float()
            for a in (post.mean(), post.predictive_var(), post.concentration())
        )

    def _loss(self, x: torch.Tensor, y: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
        """Negative log posterior predictive ``-log p(y | z)`` over the seen classes."""
        mean, var, conc = self._task_posterior()
        scores = log_joint(self.net.embed(x), mean, var, conc).masked_fill(unseen, -math.inf)
        return nn.functional.cross_entropy(scores, y)

    def _after_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        self.posterior.update(self.embed(x), y)
        self._task = None
        if self.coreset_size:
            keep = self._rng.choice(len(x), min(self.coreset_size, len(x)), replace=False)
            self._coreset_x.append(x[keep])
            self._coreset_y.append(y[keep])

    # -- prediction -----------------------------------------------------------------------------

    def log_predictive(self, x: np.ndarray) -> np.ndarray:
        """``log p(y=c | x)`` over the seen classes (``-inf`` for unseen), ``(N, num_classes)``."""
        if not self.seen:
            raise RuntimeError("log_predictive called before any task was learned")
        post = self.posterior
        z = torch.from_numpy(self.embed(x))
        scores = log_joint(
            z,
            torch.from_numpy(post.mean()),
            torch.from_numpy(post.predictive_var()),
            torch.from_numpy(post.concentration()),
        )
        scores[:, torch.from_numpy(self._unseen_mask())] = -math.inf
        return torch.log_softmax(scores, dim=1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Argmax of the posterior predictive over the classes seen so far."""
        return self.log_predictive(x).argmax(axis=1).astype(np.int64)
