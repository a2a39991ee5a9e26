"""The configuration of ``sennflow pfn-train`` (``conf/pfn/*.yaml`` mirrors it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.pfn.priors import build_prior


@dataclass(frozen=True)
class PFNTrainConfig:
    """Hyperparameters of :func:`components.pfn.train.train_pfn`.

    Attributes:
        prior: ``gp`` (regression) or ``bnn`` (classification or regression).
        gp, bnn: the options of :class:`~components.pfn.priors.GPPrior` /
            :class:`~components.pfn.priors.BNNPrior` (only the chosen prior's are read).
        d_model, nhead, layers, d_ff: the transformer (``model=pfn`` must use the same).
        buckets: bar-distribution buckets of a regression PFN (the paper: 1000).
        steps, batch_size, seq_len: optimisation steps, tasks per step, rows per task (the
            split into context and queries is drawn uniformly per step, >= 1 query).
        lr, warmup_steps: Adam, linear warm-up then cosine decay to 0 (as the reference).
        checkpoint_every: steps between reports (held-out loss) and checkpoints.
        eval_tasks: held-out prior tasks the validation loss is measured on.
        num_workers: Ray Train workers (data parallel: each draws its own tasks).
        max_failures: worker failures Ray Train recovers from, resuming at the last checkpoint.
        seed: seeds the network, the prior's draws and the held-out tasks.
    """

    prior: str = "gp"
    gp: dict = field(default_factory=dict)
    bnn: dict = field(default_factory=dict)
    d_model: int = 64
    nhead: int = 4
    layers: int = 4
    d_ff: int = 128
    buckets: int = 100
    steps: int = 2000
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    checkpoint_every: int = 200
    eval_tasks: int = 128
    num_workers: int = 1
    max_failures: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("d_model", "nhead", "layers", "d_ff", "buckets", "steps", "batch_size")
        for name in (*positive, "checkpoint_every", "eval_tasks", "num_workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PFNTrainConfig.{name} must be a positive int, got {value!r}")
        if self.seq_len < 2:
            raise ValueError(f"PFNTrainConfig.seq_len must be >= 2, got {self.seq_len}")
        if self.d_model % self.nhead:
            raise ValueError(
                f"PFNTrainConfig.d_model={self.d_model} must be divisible by nhead={self.nhead}"
            )
        if not self.lr > 0:
            raise ValueError(f"PFNTrainConfig.lr must be > 0, got {self.lr}")
        self.build_prior()  # a bad prior name or option fails here, naming the key

    def build_prior(self):
        """The chosen prior with its options."""
        return build_prior(self.prior, dict(getattr(self, self.prior, None) or {}))

    @property
    def task(self) -> str:
        """``regression`` or ``classification``: the chosen prior's task."""
        return self.build_prior().task

    def architecture(self) -> dict:
        """The network's constructor arguments (also stored with its weights)."""
        prior = self.build_prior()
        classes = prior.max_classes if prior.task == "classification" else 0
        return {
            "num_features": getattr(prior, "max_features", None) or prior.num_features,
            "d_model": self.d_model,
            "nhead": self.nhead,
            "layers": self.layers,
            "d_ff": self.d_ff,
            "outputs": classes or self.buckets,
            "label_classes": classes,
        }
