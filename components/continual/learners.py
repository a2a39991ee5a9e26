"""Baseline class-incremental learners: fine-tuning, joint training and nearest class mean.

Every learner owns a small embedding network (an MLP on the flattened input, by default
``64 -> 128 -> 64``) plus a linear head over *all* classes of the stream (a single head, no task
id at test time: the class-incremental scenario of van de Ven & Tolias, "Three scenarios for
continual learning", 2019). Logits of classes not seen yet are masked out, both in the loss and
at prediction, so the head "grows" with the stream.

Methods (``components.continual.stream.create_learner(method, config)`` builds any of them):

- ``finetune`` (:class:`FinetuneLearner`): cross-entropy on the current task only, over the
  classes seen so far. Nothing protects old classes, so it suffers catastrophic forgetting
  (McCloskey & Cohen 1989; French 1999); the lower bound.
- ``joint`` (:class:`JointLearner`): stores every task's data and, at each task, trains on the
  union of all tasks seen so far; the upper bound (offline / multi-task training).
- ``ncm`` (:class:`NCMLearner`): the nearest-class-mean classifier of Rebuffi et al., "iCaRL:
  Incremental Classifier and Representation Learning", CVPR 2017 (Sec. 2.1), in an exemplar-free
  variant whose embedding is learned on every task as an autoencoder's encoder with embedding
  distillation, stated exactly in the class docstring; it has its own default configuration.

All learners share one optimiser (SGD with momentum) and one global-step learning-rate scheduler
for the whole stream: the infinite learning-rate schedule of Ibrahim et al. (TMLR 2024) /
Singh et al. (2025), ``components.continual.schedules.InfiniteSchedule`` driven by
``ScheduleLR``: warm-up and cosine cool-down once at the start of the stream, then each task
runs at ``const_lr`` and anneals exponentially to ``min_lr`` over its last ``anneal_steps``
steps; later tasks restart at ``const_lr``, never re-warmed.

The classes are plain Python objects meant to become Ray actors later: constructor arguments are
a method name and a frozen dataclass (picklable), and the public methods take and return numpy
arrays. Class ids must be integers in ``[0, config.num_classes)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from components.continual.scenarios import Task
from components.continual.schedules import InfiniteSchedule, ScheduleLR

__all__ = [
    "EmbeddingNet",
    "FinetuneLearner",
    "JointLearner",
    "Learner",
    "LearnerConfig",
    "NCMLearner",
]


@dataclass(frozen=True)
class LearnerConfig:
    """Network, optimiser and schedule of a learner (picklable, so an actor can take it).

    Attributes:
        input_dim: number of input features after flattening (64 for 8x8 digits).
        hidden_dim: width of the hidden layer of the embedding MLP.
        embedding_dim: width of the embedding (the input of the head and of NCM).
        num_classes: size of the single head: class ids are ``0..num_classes-1``.
        epochs: passes over a task's training set (over the union of tasks for ``joint``).
        batch_size: mini-batch size.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        max_lr, const_lr, min_lr: peak, constant and end-of-task rates of the infinite schedule.
        warmup_steps, cooldown_steps: once, at the start of the stream.
        anneal_steps: each task's exponential decay to ``min_lr``; a task shorter than this is
            annealed over all its steps (and the first task must outlast warm-up + cool-down).
        seed: seeds the initial weights and the mini-batch order.
    """

    input_dim: int = 64
    hidden_dim: int = 128
    embedding_dim: int = 64
    num_classes: int = 10
    epochs: int = 15
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_lr: float = 0.1
    const_lr: float = 0.05
    min_lr: float = 0.001
    warmup_steps: int = 10
    cooldown_steps: int = 30
    anneal_steps: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        counts = ("input_dim", "hidden_dim", "embedding_dim", "num_classes", "epochs", "batch_size")
        bad = [
            f"{name}={getattr(self, name)} (must be >= 1)"
            for name in counts
            if getattr(self, name) < 1
        ]
        if not 0.0 <= self.momentum < 1.0:
            bad.append(f"momentum={self.momentum} (must be in [0, 1))")
        if self.weight_decay < 0:
            bad.append(f"weight_decay={self.weight_decay} (must be >= 0)")
        if bad:
            raise ValueError("; ".join(bad))
        self.schedule()  # its rates and steps: 0 < min_lr <= const_lr <= max_lr, steps >= 0

    def schedule(self) -> InfiniteSchedule:
        """The infinite learning-rate schedule of this configuration."""
        return InfiniteSchedule(
            self.max_lr,
            self.const_lr,
            self.min_lr,
            warmup_steps=self.warmup_steps,
            cooldown_steps=self.cooldown_steps,
            anneal_steps=self.anneal_steps,
        )


class EmbeddingNet(nn.Module):
    """MLP embedding ``input -> hidden -> embedding`` (ReLU after both) and a linear head."""

    def __init__(self, input_dim: int, hidden_dim: int, embedding_dim: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, embedding_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(embedding_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Learner:
    """A class-incremental learner: ``learn_task`` per task, ``predict`` over all seen classes.

    Subclasses set :attr:`method` and may override :meth:`_train_set` (what to train on at a
    task), :meth:`_after_task` and :meth:`predict`.
    """

    method = "finetune"

    def __init__(self, config: LearnerConfig | None = None) -> None:
        self.config = config or LearnerConfig()
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.net = EmbeddingNet(c.input_dim, c.hidden_dim, c.embedding_dim, c.num_classes)
        self.optimizer = torch.optim.SGD(
            self.net.parameters(), lr=c.max_lr, momentum=c.momentum, weight_decay=c.weight_decay
        )
        self.scheduler = ScheduleLR(self.optimizer, c.schedule())
        self.global_step = 0
        self.seen: list[int] = []
        self.tasks_learned = 0
        self._rng = np.random.default_rng(c.seed)
        self._lrs: list[float] = []  # learning rates of the current task's steps

    # -- public API (numpy in, numpy out) -------------------------------------------------------

    def learn_task(self, x: np.ndarray, y: np.ndarray, classes: Sequence[int]) -> dict:
        """Learn one task: samples ``x``/``y`` whose labels lie in the task's new ``classes``.

        Returns a small record: ``task`` (index), ``steps`` (global optimizer steps so far),
        ``final_loss`` (last mini-batch), ``lr_max`` and ``lr_last`` (the largest and the last
        learning rate used in this task; ``nan`` if the task trained nothing).
        """
        x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        y = np.asarray(y, dtype=np.int64)
        classes = [int(c) for c in classes]
        self._check_task(x, y, classes)
        self._before_task(x, y, classes)
        self.seen += [c for c in classes if c not in self.seen]
        x_train, y_train = self._train_set(x, y)
        self._lrs = []
        loss = self._fit(x_train, y_train)
        self._after_task(x, y, classes)
        self.tasks_learned += 1
        return {
            "task": self.tasks_learned - 1,
            "steps": self.global_step,
            "final_loss": loss,
            "lr_max": max(self._lrs, default=math.nan),
            "lr_last": self._lrs[-1] if self._lrs else math.nan,
        }

    @property
    def task_lrs(self) -> list[float]:
        """The learning rate of each optimizer step of the last task learned (a copy)."""
        return list(self._lrs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Labels (class ids) of ``x``: argmax of the head over the classes seen so far."""
        if not self.seen:
            raise RuntimeError("predict called before any task was learned")
        logits = self._forward_numpy(x, embed=False)
        logits[:, self._unseen_mask()] = -np.inf
        return logits.argmax(axis=1).astype(np.int64)

    def evaluate(self, tasks: Sequence[Task], x_test: np.ndarray, y_test: np.ndarray) -> np.ndarray:
        """Accuracy on each task's test samples (those of ``y_test`` in ``task.classes``).

        One row ``R[i, :]`` of the accuracy matrix when called after learning task ``i``. A task
        with no test sample gets ``nan``.
        """
        y_test = np.asarray(y_test)
        pred = self.predict(x_test)
        accs = []
        for task in tasks:
            mask = np.isin(y_test, task.classes)
            accs.append(float((pred[mask] == y_test[mask]).mean()) if mask.any() else math.nan)
        return np.array(accs)

    # -- training -------------------------------------------------------------------------------

    def _check_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        c = self.config
        if x.shape[1] != c.input_dim:
            raise ValueError(f"x has {x.shape[1]} features, config.input_dim is {c.input_dim}")
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"need as many labels as samples (> 0), got {len(x)} and {len(y)}")
        if not classes or min(classes) < 0 or max(classes) >= c.num_classes:
            raise ValueError(f"classes {classes} must be non-empty, in [0, {c.num_classes})")
        if not np.isin(y, classes).all():
            raise ValueError(f"labels {sorted(set(y.tolist()) - set(classes))} not in {classes}")

    def _before_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        """Hook run before a task (``self.seen`` does not hold its classes yet), e.g. to keep a
        frozen copy of the network for distillation."""

    def _train_set(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples to train on at this task: the current task's (fine-tuning)."""
        return x, y

    def _loss(self, x: torch.Tensor, y: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
        """Loss of one mini-batch: cross-entropy of the head over the seen classes.

        Subclasses replace it with their method's loss; extra trainable tensors go into
        ``self.optimizer`` with ``add_param_group`` so the schedule drives them too.
        """
        logits = self.net(x).masked_fill(unseen, -1e9)
        return nn.functional.cross_entropy(logits, y)

    def _after_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        """Hook run after training on a task, with that task's own samples."""

    def _unseen_mask(self) -> np.ndarray:
        mask = np.ones(self.config.num_classes, dtype=bool)
        mask[self.seen] = False
        return mask

    def _fit(self, x: np.ndarray, y: np.ndarray) -> float:
        """``epochs`` of SGD with cross-entropy over the seen classes; returns the last loss."""
        c = self.config
        steps_per_epoch = math.ceil(len(x) / c.batch_size)
        steps = c.epochs * steps_per_epoch
        end = self.global_step + steps - 1
        if c.anneal_steps and end - c.anneal_steps < self.scheduler.schedule.constant_start:
            raise ValueError(
                f"task of {steps} steps ending at step {end} is too short for warm-up "
                f"({c.warmup_steps}) + cool-down ({c.cooldown_steps}) + anneal ({c.anneal_steps})"
            )
        self.scheduler.add_task_end(end)
        unseen = torch.from_numpy(self._unseen_mask())
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        self.net.train()
        loss = torch.tensor(math.nan)
        for _ in range(c.epochs):
            order = torch.from_numpy(self._rng.permutation(len(x)))
            for k in range(steps_per_epoch):
                idx = order[k * c.batch_size : (k + 1) * c.batch_size]
                loss = self._loss(xt[idx], yt[idx], unseen)
                self._lrs.append(self.optimizer.param_groups[0]["lr"])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                self.global_step += 1
        self.net.eval()
        return float(loss.detach())

    @torch.no_grad()
    def _forward_numpy(self, x: np.ndarray, *, embed: bool) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        self.net.eval()
        out = self.net.embed(xt) if embed else self.net(xt)
        return out.numpy().astype(np.float64)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embedding of ``x`` (float64, ``(N, embedding_dim)``)."""
        return self._forward_numpy(x, embed=True)


class FinetuneLearner(Learner):
    """Fine-tuning, the lower bound: cross-entropy on the current task only (see module)."""

    method = "finetune"


class JointLearner(Learner):
    """Joint training, the upper bound: stores all data and trains on the union seen so far.

    Each task runs ``epochs`` passes over the union (so later tasks take more steps), continuing
    from the current weights with the same global schedule.
    """

    method = "joint"

    def __init__(self, config: LearnerConfig | None = None) -> None:
        super().__init__(config)
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []

    def _train_set(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._x.append(x)
        self._y.append(y)
        return np.concatenate(self._x), np.concatenate(self._y)


class NCMLearner(Learner):
    """Nearest class mean on the learned embedding (Rebuffi et al. 2017, iCaRL, Sec. 2.1).

    The exact variant, exemplar-free (no stored samples, unlike iCaRL, whose means come from an
    exemplar memory and are recomputed after every task):

    1. The embedding (the body of :class:`EmbeddingNet`, output after its last ReLU) is
       trained per ``train_embedding``:

       - ``"reconstruct"`` (default): on every task, without labels, as the encoder of an
         autoencoder (a decoder ``embedding -> hidden -> input``, ReLU, trained with it):
         loss = mean squared reconstruction error of the task's inputs + ``distill_weight``
         times the mean squared distance between the L2-normalised embedding of each sample
         and that of a frozen copy of the body taken at the start of the task (at task 0, the
         initialisation);
       - ``"first"``: cross-entropy through the head on the first task only, then frozen;
       - ``"every"``: cross-entropy through the head on every task, as in fine-tuning;
       - ``"none"``: never (fixed random features; a reference, not a learned embedding).

    2. When a class is seen (at the end of the task that brings it), its mean embedding is
       computed from that task's samples, after L2-normalising each embedding as in iCaRL, and
       is never updated again. Means are kept as per-class sums and counts (:meth:`prototypes`),
       so they can be merged across learners (federated reconnaissance, Hendryx et al. 2021).
    3. A sample is classified by the nearest mean (Euclidean distance between its L2-normalised
       embedding and the class means) over the classes seen so far; the head is not used.

    Why the default. On split digits (5 x 2 classes) the input itself separates the digits (NCM
    on the normalised 64 pixels: 0.91) and so does the random-init embedding (0.81 with hidden
    128 / embedding 64, 0.91 with 512 / 256), but cross-entropy on 2 classes at a time collapses
    the embedding onto that task's discriminant: ``"first"`` reaches 0.44 with
    ``LearnerConfig()`` and ``"every"`` forgets (stale means). Two ideas keep the embedding
    general and the stored means valid: an unsupervised objective, which is not specific to the
    task's classes (Madaan et al., "Representational Continuity for Unsupervised Continual
    Learning", ICLR 2022: unsupervised representations forget less than supervised ones), and
    embedding distillation from the previous model (the exemplar-free "E-LwF" of Yu et al.,
    "Semantic Drift Compensation for Class-Incremental Learning", CVPR 2020, on normalised
    features as in Hou et al., LUCIR, CVPR 2019; at task 0, a feature-space L2-SP, Li et al.,
    ICML 2018). Measured, final average accuracy / forgetting over class order and ``seed``
    0 / 1 / 2:

    - default with :attr:`DEFAULT_CONFIG` (what ``config=None`` gives: hidden 512, embedding
      256, learning rates 10x below ``LearnerConfig()``): 0.888 / 0.862 / 0.877, forgetting
      0.046 / 0.061 / 0.037 (untrained reference: 0.914 / 0.881 / 0.884; without the
      distillation: 0.802 / 0.776 / 0.806);
    - default kwargs with ``LearnerConfig()``: 0.821 / 0.821 / 0.799, forgetting 0.074 /
      0.099 / 0.051 (untrained reference: 0.810 / 0.803 / 0.795);
    - cross-entropy + the same distillation (weight 10) instead of reconstruction: 0.918 /
      0.877 / 0.892 with :attr:`DEFAULT_CONFIG` but 0.17 - 0.26 with ``LearnerConfig()``
      (the 2-class collapse), hence reconstruction is the default.

    Args:
        config: network, optimiser and schedule (``None``: :attr:`DEFAULT_CONFIG`).
        train_embedding: ``"reconstruct"``, ``"first"``, ``"every"`` or ``"none"`` (above).
        distill_weight: coefficient of the distillation term (``"reconstruct"`` only), >= 0.

    Raises:
        ValueError: an unknown ``train_embedding`` or a negative ``distill_weight``.
    """

    method = "ncm"
    EMBEDDING_TRAINING = ("reconstruct", "first", "every", "none")
    DEFAULT_CONFIG = LearnerConfig(
        hidden_dim=512, embedding_dim=256, max_lr=0.01, const_lr=0.005, min_lr=1e-4
    )

    def __init__(
        self,
        config: LearnerConfig | None = None,
        *,
        train_embedding: str = "reconstruct",
        distill_weight: float = 3.0,
    ) -> None:
        if train_embedding not in self.EMBEDDING_TRAINING:
            raise ValueError(
                f"train_embedding must be one of {self.EMBEDDING_TRAINING}, got {train_embedding!r}"
            )
        if not (math.isfinite(distill_weight) and distill_weight >= 0):
            raise ValueError(f"distill_weight must be a finite number >= 0, got {distill_weight!r}")
        super().__init__(config or self.DEFAULT_CONFIG)
        self.train_embedding = train_embedding
        self.distill_weight = float(distill_weight)
        c = self.config
        self.sums = np.zeros((c.num_classes, c.embedding_dim))
        self.counts = np.zeros(c.num_classes, dtype=np.int64)
        self._teacher: nn.Module | None = None
        self.decoder: nn.Module | None = None
        if train_embedding == "reconstruct":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(c.seed + 1)
                self.decoder = nn.Sequential(
                    nn.Linear(c.embedding_dim, c.hidden_dim),
                    nn.ReLU(),
                    nn.Linear(c.hidden_dim, c.input_dim),
                )
            self.optimizer.add_param_group({"params": list(self.decoder.parameters())})

    def _fit(self, x: np.ndarray, y: np.ndarray) -> float:
        if self.train_embedding == "none" or (
            self.train_embedding == "first" and self.tasks_learned > 0
        ):
            return math.nan
        return super()._fit(x, y)

    def _before_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        if self.train_embedding == "reconstruct" and self.distill_weight:
            c = self.config  # a frozen copy of the body as it enters this task
            teacher = EmbeddingNet(c.input_dim, c.hidden_dim, c.embedding_dim, c.num_classes)
            teacher.load_state_dict(self.net.state_dict())
            self._teacher = teacher.body.eval().requires_grad_(False)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, unseen: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (``"first"``, ``"every"``) or reconstruction + distillation."""
        if self.decoder is None:
            return super()._loss(x, y, unseen)
        z = self.net.embed(x)
        loss = ((self.decoder(z) - x.flatten(1)) ** 2).mean()
        if self._teacher is None:
            return loss
        with torch.no_grad():
            target = nn.functional.normalize(self._teacher(x), dim=1)
        distance = (nn.functional.normalize(z, dim=1) - target) ** 2
        return loss + self.distill_weight * distance.sum(1).mean()

    def _normalized_embedding(self, x: np.ndarray) -> np.ndarray:
        z = self.embed(x)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    def _after_task(self, x: np.ndarray, y: np.ndarray, classes: list[int]) -> None:
        self._teacher = None
        z = self._normalized_embedding(x)
        for c in classes:
            self.sums[c] = z[y == c].sum(axis=0)
            self.counts[c] = int((y == c).sum())

    def prototypes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-class embedding sums ``(num_classes, embedding_dim)`` and counts (copies)."""
        return self.sums.copy(), self.counts.copy()

    def class_means(self) -> np.ndarray:
        """Mean embedding of each class (``nan`` rows for classes without samples)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / self.counts[:, None]

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not self.seen:
            raise RuntimeError("predict called before any task was learned")
        seen = np.array([c for c in self.seen if self.counts[c] > 0])
        means = self.class_means()[seen]
        z = self._normalized_embedding(x)
        d2 = (z**2).sum(1)[:, None] - 2 * z @ means.T + (means**2).sum(1)[None, :]
        return seen[d2.argmin(axis=1)].astype(np.int64)
