"""The configuration of a self-supervised pre-training run (``conf/ssl/*.yaml`` mirrors it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from components.ssl.views import ViewConfig

Objective = Literal["barlow_twins", "directpred", "jepa"]
OBJECTIVES = ("barlow_twins", "directpred", "jepa")
PREDICTORS = ("direct", "linear")
REFERENCE_LAMBDA, REFERENCE_WIDTH = 0.0051, 8192  # facebookresearch/barlowtwins main.py


@dataclass(frozen=True)
class SSLConfig:
    """Hyperparameters of :func:`components.ssl.learner.pretrain_encoder`.

    Attributes:
        objective: ``barlow_twins``, ``directpred`` or ``jepa``.
        projector_width: width of every projector layer (Barlow Twins: 8192 in the paper).
        projector_layers: linear layers of the projector (BN + ReLU between them).
        lambd: Barlow Twins' off-diagonal weight; ``None``: the reference's ``0.0051`` at width
            8192 scaled to keep ``lambda * width`` (the off-diagonal terms' total weight
            relative to the diagonal's), i.e. ``0.0051 * 8192 / projector_width``. At width
            64 the unscaled 0.0051 leaves redundancy rising over training on digits.
        predictor: directpred/jepa: ``direct`` (set from the correlation, DirectPred) or
            ``linear`` (a bias-free linear layer trained by gradients, as BYOL/JEPA).
        ema: momentum of the target network (directpred/jepa; BYOL's tau).
        stop_gradient: directpred/jepa: detach the target branch (False: the ablation that
            collapses, both branches are the online network).
        dp_rho, dp_eps, dp_freq: DirectPred's correlation EMA, eigenvalue floor, update period.
        epochs, batch_size, lr, weight_decay: the Adam optimisation.
        num_workers: Ray Train workers (data parallel).
        seed: seeds the model, the shuffling and the views.
        probe_samples: training rows the probes fit on (0: all).
        views: the augmentations (:class:`ViewConfig`, a dict from Hydra).
    """

    objective: Objective = "barlow_twins"
    projector_width: int = 256
    projector_layers: int = 2
    lambd: float | None = None
    predictor: str = "direct"
    ema: float = 0.99
    stop_gradient: bool = True
    dp_rho: float = 0.3
    dp_eps: float = 0.1
    dp_freq: int = 1
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-6
    num_workers: int = 1
    seed: int = 0
    probe_samples: int = 0
    views: ViewConfig = field(default_factory=ViewConfig)

    def __post_init__(self) -> None:
        if isinstance(self.views, dict):
            try:
                views = ViewConfig(**self.views)
            except (TypeError, ValueError) as err:
                message = str(err).replace("ViewConfig.", "SSLConfig.views.")
                raise ValueError(
                    message.replace("ViewConfig.__init__()", "SSLConfig.views")
                ) from err
            object.__setattr__(self, "views", views)
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"SSLConfig.objective must be one of {', '.join(OBJECTIVES)}, "
                f"got {self.objective!r}"
            )
        if self.predictor not in PREDICTORS:
            raise ValueError(
                f"SSLConfig.predictor must be one of {', '.join(PREDICTORS)}, "
                f"got {self.predictor!r}"
            )
        for name in ("projector_width", "projector_layers", "epochs", "dp_freq", "num_workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SSLConfig.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.batch_size) < 2:
            raise ValueError(f"SSLConfig.batch_size must be >= 2, got {self.batch_size}")
        for name in ("ema", "dp_rho"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"SSLConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("lambd", "dp_eps", "lr", "weight_decay", "probe_samples"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"SSLConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr == 0:
            raise ValueError("SSLConfig.lr must be > 0")

    @property
    def off_diagonal_weight(self) -> float:
        """Barlow Twins' lambda: ``lambd``, or the reference's scaled to the projector width."""
        if self.lambd is not None:
            return float(self.lambd)
        return REFERENCE_LAMBDA * REFERENCE_WIDTH / self.projector_width
