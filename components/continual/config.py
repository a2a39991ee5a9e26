"""The continual experiment's settings (the ``continual`` config group), validated."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from components.continual.learners import LearnerConfig
from components.continual.stream import METHODS, create_learner, default_config


@dataclass(frozen=True)
class ContinualConfig:
    """Which methods meet which stream, and how they learn.

    Attributes:
        methods: continual methods to run side by side (keys of
            :data:`components.continual.stream.METHODS`).
        num_tasks: tasks of the class-incremental stream.
        classes_per_task: ``None`` for an even split, or one size per task.
        seed: seeds the class order and every learner.
        learner: :class:`~components.continual.learners.LearnerConfig` fields set for every
            method on top of the method's own default (``None`` values are ignored;
            ``input_dim`` and ``num_classes`` come from the dataset).
        method_params: per-method keyword arguments, ``{method: {name: value}}``.
        federated_clients: when > 0, also run federated continual learning
            (:mod:`components.continual.federated`) with this many clients.
        federated_embedding: an SSL checkpoint folder (``sennflow pretrain``) whose encoder is
            the federated clients' shared embedding (``None``: the seeded, untrained one).
        max_restarts: how often a method's learner actor that dies is rebuilt from its last
            completed task before the run fails (:mod:`components.continual.experiment`).
    """

    methods: tuple[str, ...] = ("finetune", "joint", "ncm", "prd", "napa_vq", "protocl")
    num_tasks: int = 5
    classes_per_task: tuple[int, ...] | None = None
    seed: int = 0
    learner: Mapping = field(default_factory=dict)
    method_params: Mapping = field(default_factory=dict)
    federated_clients: int = 0
    federated_embedding: str | None = None
    max_restarts: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        unknown = [m for m in self.methods if m not in METHODS]
        if not self.methods or unknown or len(set(self.methods)) < len(self.methods):
            raise ValueError(
                f"ContinualConfig.methods={list(self.methods)}: need distinct methods from "
                f"{sorted(METHODS)}"
            )
        stray = sorted(set(self.method_params) - set(self.methods))
        if stray:
            raise ValueError(
                f"ContinualConfig.method_params has options for {stray}, which are not in "
                f"methods {list(self.methods)}"
            )
        known = {f.name for f in fields(LearnerConfig)} - {"input_dim", "num_classes", "seed"}
        extra = sorted(set(self.learner) - known)
        if extra:
            raise ValueError(
                f"ContinualConfig.learner: unknown keys {extra}; known: {sorted(known)}"
            )
        if self.num_tasks < 1 or self.federated_clients < 0:
            raise ValueError(
                f"ContinualConfig: num_tasks must be >= 1 and federated_clients >= 0, got "
                f"{self.num_tasks} and {self.federated_clients}"
            )
        if self.max_restarts < 0:
            raise ValueError(f"ContinualConfig.max_restarts={self.max_restarts}: must be >= 0")
        for method in self.methods:  # fail now, not inside an actor
            config = self.learner_config(method, 64, 10)
            try:
                create_learner(method, config, **dict(self.method_params.get(method) or {}))
            except ValueError as err:
                raise ValueError(f"ContinualConfig.method_params.{method}: {err}") from err

    def learner_config(self, method: str, input_dim: int, num_classes: int) -> LearnerConfig:
        """``method``'s :class:`LearnerConfig` for a dataset of that shape: its class's
        ``DEFAULT_CONFIG`` (else ``LearnerConfig()``) with :attr:`learner` applied."""
        overrides = {k: v for k, v in self.learner.items() if v is not None}
        try:
            return dataclasses.replace(
                default_config(method),
                input_dim=input_dim,
                num_classes=num_classes,
                seed=self.seed,
                **overrides,
            )
        except ValueError as err:
            raise ValueError(f"ContinualConfig.learner: {err}") from err
