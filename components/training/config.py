"""Typed training configuration (converted from Hydra config at the flow edge)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from typing import Any

from components.training.boost_config import FINAL_LAYERS, BoostConfig
from components.training.ftwt_config import DYNAMIC_PRUNING, FtwtConfig
from components.training.pskd_config import SELF_DISTILL, PSKDConfig
from components.training.xnesyl_config import XNeSyLConfig

CLASS_WEIGHTS = ("none", "balanced")  # train.class_weights (components.training.class_weights)


@dataclass(frozen=True)
class TrainConfig:
    """Everything the fit loop and the Ray Train wrapper need.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: per-worker batch size.
        lr: initial learning rate.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        optimizer: ``adamw`` | ``adam`` | ``sgd``.
        lr_schedule: ``cosine`` (annealed to 0 over ``epochs``) | ``step`` (x0.1 at 50% and
            75% of ``epochs``) | ``none``.
        early_stopping_patience: epochs without a val-loss improvement before stopping (0 disables).
        min_delta: smallest val-loss decrease counted as an improvement.
        grad_clip: max global gradient norm (0 disables).
        seed: seeds weights, shuffling and dropout (per epoch, so a resumed run is reproducible).
        num_workers: Ray Train workers (data-parallel, DDP when > 1).
        use_gpu: one GPU per worker.
        precision: ``bf16`` (autocast on CUDA; ignored on CPU) | ``fp32``.
        cpus_per_worker: CPU threads and Ray CPU resources per worker.
        placement_strategy: how Ray places the workers: ``PACK`` (as few nodes as possible) |
            ``SPREAD`` (across nodes, so one lost node does not take every worker; it falls back
            to the nodes left when fewer remain).
        max_failures: worker-group restarts from the last checkpoint after a worker dies.
        keep_checkpoints: how many of the best (by val loss) checkpoints Ray keeps.
        resume_from: a checkpoint folder to continue from (weights, optimiser, epoch, history).
        kill_worker_at_epoch: fault injection for tests/chaos drills: rank 0 SIGKILLs itself once
            after reporting this epoch's checkpoint.
        decode_workers: image datasets: processes per Ray worker that decode and augment
            images (0: decode in the training process).
        prefetch_batches: image datasets: batches each decoding process prepares ahead.
        compile: ``torch.compile`` the model (on GPU, after a warm-up the steps are faster).
        hyper_schedule: per epoch, hyperparameters to set at its start (a learned STN
            schedule: ``dropout``, ``weight_decay``, augmentation strengths; see
            :mod:`components.training.replay`); empty: none.
        final_layer: ``standard`` | ``boosted``: train the last hidden + output layer as a
            gradient-boosted additive expansion (:mod:`components.training.boosted`).
        boost: the boosted final layer's settings (``train.boost.*``).
        self_distill: ``none`` | ``pskd``: train the cross-entropy against the model's own
            progressively refined predictions (:mod:`components.training.pskd`) |
            ``iterative``: rounds of self-distillation with ground-truth targets.
        pskd: PS-KD's settings (``train.pskd.alpha_T``).
        self_distill_rounds: ``self_distill=iterative``: distillation rounds after round 0, each
            against the previous round's network with the estimated ground-truth weight
            (:mod:`components.training.self_distill_rounds`).
        dynamic_pruning: ``none`` | ``ftwt``: after training, learn FTWT's per-input channel
            gates for the conv trunk (:mod:`components.pruning.ftwt_stage`).
        ftwt: FTWT's settings (``train.ftwt.mass``, ...).
        label_fraction: train on a seeded (``seed``), stratified fraction of the train split's
            labelled rows, in (0, 1]; val and test keep every label
            (:mod:`components.training.label_fraction`).
        xnesyl: X-NeSyL's SHAP-Backprop (``train.xnesyl.enabled``, ``graph``, ...): weight each
            sample's cross-entropy by its part-level SHAP misattribution against a knowledge
            graph of parts (:mod:`components.training.xnesyl`).
        mixup: MixUp's Beta parameter ``alpha`` (0: off): every training batch is mixed with
            a permutation of itself by one ``lam ~ Beta(alpha, alpha)``, targets too
            (:mod:`components.training.mixup`; "Scaling MLPs" uses 0.8).
        label_smoothing: train the cross-entropy against ``(1 - eps) q + eps / C`` (0: off).
        class_weights: ``none`` | ``balanced``: weigh each sample's cross-entropy by its
            class's inverse frequency in the training split
            (:mod:`components.training.class_weights`).
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    lr_schedule: str = "cosine"
    early_stopping_patience: int = 10
    min_delta: float = 1e-4
    grad_clip: float = 0.0
    seed: int = 0
    num_workers: int = 1
    use_gpu: bool = False
    precision: str = "bf16"
    cpus_per_worker: int = 1
    placement_strategy: str = "PACK"
    max_failures: int = 2
    keep_checkpoints: int = 2
    resume_from: str | None = None
    kill_worker_at_epoch: int | None = None
    decode_workers: int = 2
    prefetch_batches: int = 2
    compile: bool = False
    hyper_schedule: tuple[dict, ...] = ()
    final_layer: str = "standard"
    boost: BoostConfig = field(default_factory=BoostConfig)
    self_distill: str = "none"
    pskd: PSKDConfig = field(default_factory=PSKDConfig)
    self_distill_rounds: int = 3
    dynamic_pruning: str = "none"
    ftwt: FtwtConfig = field(default_factory=FtwtConfig)
    label_fraction: float = 1.0
    xnesyl: XNeSyLConfig = field(default_factory=XNeSyLConfig)
    mixup: float = 0.0
    label_smoothing: float = 0.0
    class_weights: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "boost", BoostConfig.from_value(self.boost))
        object.__setattr__(self, "pskd", PSKDConfig.from_value(self.pskd))
        object.__setattr__(self, "ftwt", FtwtConfig.from_value(self.ftwt))
        object.__setattr__(self, "xnesyl", XNeSyLConfig.from_value(self.xnesyl))
        bad = [
            f"train.{name}={getattr(self, name)!r} (must be {valid})"
            for name, ok, valid in self._checks()
            if not ok
        ]
        if bad:
            raise ValueError(f"invalid training config: {'; '.join(bad)}")
        if self.mixup > 0 and (self.self_distill != "none" or self.xnesyl.enabled):
            raise ValueError(
                "invalid training config: train.mixup mixes inputs and targets, which "
                "train.self_distill and train.xnesyl (per-sample tables) cannot follow; "
                "set train.mixup=0 or turn those off"
            )

    def _checks(self) -> list[tuple[str, bool, str]]:
        """Each checked setting: its name, whether its value is valid, and what is."""
        return [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("optimizer", *_one_of(self.optimizer, ("adam", "adamw", "sgd"))),
            ("lr_schedule", *_one_of(self.lr_schedule, ("cosine", "step", "none"))),
            ("early_stopping_patience", self.early_stopping_patience >= 0, ">= 0"),
            ("min_delta", self.min_delta >= 0, ">= 0"),
            # torch scales by max_norm / norm: a negative bound would reverse every step
            ("grad_clip", self.grad_clip >= 0, ">= 0; 0 does not clip"),
            ("num_workers", self.num_workers >= 1, ">= 1"),
            ("precision", *_one_of(self.precision, ("bf16", "fp32"))),
            ("cpus_per_worker", self.cpus_per_worker >= 1, ">= 1"),
            ("placement_strategy", *_one_of(self.placement_strategy, ("PACK", "SPREAD"))),
            ("max_failures", self.max_failures >= 0, ">= 0"),
            ("keep_checkpoints", self.keep_checkpoints >= 1, ">= 1"),
            ("decode_workers", self.decode_workers >= 0, ">= 0"),
            ("prefetch_batches", self.prefetch_batches >= 1, ">= 1"),
            ("final_layer", *_one_of(self.final_layer, FINAL_LAYERS)),
            ("self_distill", *_one_of(self.self_distill, SELF_DISTILL)),
            ("self_distill_rounds", self.self_distill_rounds >= 1, ">= 1"),
            ("dynamic_pruning", *_one_of(self.dynamic_pruning, DYNAMIC_PRUNING)),
            ("label_fraction", 0.0 < self.label_fraction <= 1.0, "in (0, 1]"),
            ("mixup", self.mixup >= 0, ">= 0"),
            ("label_smoothing", 0.0 <= self.label_smoothing < 1.0, "in [0, 1)"),
            ("class_weights", *_one_of(self.class_weights, CLASS_WEIGHTS)),
        ]

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of all fields, for validating user overrides; a nested block's settings as
        ``block.key`` (``pskd.alpha_T``)."""
        names = []
        for f in fields(cls):
            names.append(f.name)
            default = f.default if f.default_factory is MISSING else f.default_factory()
            if is_dataclass(default):
                names += [f"{f.name}.{inner.name}" for inner in fields(default)]
        return names

    def with_overrides(self, values: Mapping[str, Any]) -> TrainConfig:
        """A copy with ``values`` set (validated); ``block.key`` sets one setting of a nested
        block (``pskd.alpha_T``: a search dimension)."""
        top = {name: value for name, value in values.items() if "." not in name}
        for name, value in values.items():
            if "." in name:
                block, _, key = name.partition(".")
                top[block] = replace(top.get(block, getattr(self, block)), **{key: value})
        return replace(self, **top)


def _one_of(value: object, allowed: tuple[str, ...]) -> tuple[bool, str]:
    return value in allowed, "one of " + ", ".join(allowed)
