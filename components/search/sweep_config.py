"""How to search: the method names and :class:`SweepConfig`, validated.

Kept apart from :mod:`components.search.tune_sweep` (which runs a sweep) so that the Tune set-up
(:mod:`components.search.algorithms`) and the flows' config validation can read it without
importing Ray Tune's trainables.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.search import pareto, trial_metrics
from components.search.resources import parse_resources

HYPERPARAMETER_METHODS = ("fifo", "random", "asha", "pbt", "optuna", "hyperband", "pb2", "bohb")
# Methods whose trials restart from Tune checkpoints (cloned, or paused until their bracket
# decides): Ray Train runs (train.num_workers > 1) keep their checkpoints to themselves.
CHECKPOINT_METHODS = ("pbt", "pb2", "hyperband", "bohb")
# Methods whose trainables hold the train and val splits in memory (their own trainables).
IN_MEMORY_METHODS = ("stn", "darts", "random_ws", "enas", "bossnas")
METHODS = (*HYPERPARAMETER_METHODS, *IN_MEMORY_METHODS)


@dataclass(frozen=True)
class SweepConfig:
    """How to search.

    Attributes:
        method: one of :data:`METHODS`.
        num_samples: trials to run.
        max_concurrent: trials running at once.
        grace_period: ASHA: epochs every trial gets before it can be stopped.
        reduction_factor: ASHA: keep the top ``1/reduction_factor`` at each rung.
        perturbation_interval: PBT: epochs between exploit/explore decisions.
        quantile_fraction: PBT: the bottom fraction that clones the top fraction (small
            populations need 0.5, or no trial falls in either).
        seed: seeds the search algorithm (and every trial's training seed).
        metric: the reported metric trials are ranked by (one of
            :data:`components.search.trial_metrics.METRICS`).
        mode: ``min`` or ``max``; None: the metric's known better direction.
        objectives: two metrics for a multi-objective search (``optuna`` only); the retrained
            trial is the Pareto front's point ``pick`` chooses, and ``metric`` is not used.
        pick: how the retrained front point is chosen (see :mod:`components.search.pareto`):
            ``knee``, ``within``, or one objective's name.
        pick_within: ``within``: how far below the best first objective a point may lie.
        resources_per_trial: ``{cpu, gpu}`` each single-process trial reserves (a ``gpu``
            fraction packs several trials on one GPU, each training on CUDA); None:
            ``train.cpus_per_worker`` CPUs, no GPU (see :mod:`components.search.resources`).
    """

    method: str = "asha"
    num_samples: int = 8
    max_concurrent: int = 2
    grace_period: int = 1
    reduction_factor: int = 2
    perturbation_interval: int = 2
    quantile_fraction: float = 0.25
    seed: int = 0
    metric: str = "val_loss"
    mode: str | None = None
    objectives: tuple[str, ...] = ()
    pick: str = "knee"
    pick_within: float = 0.01
    resources_per_trial: dict | None = None

    def __post_init__(self) -> None:
        resources = parse_resources(self.resources_per_trial)
        object.__setattr__(self, "resources_per_trial", resources)
        if self.method not in METHODS:
            raise ValueError(f"search.method={self.method!r} is not one of {list(METHODS)}")
        least = {
            "num_samples": 1,
            "max_concurrent": 1,
            "grace_period": 1,
            "reduction_factor": 2,
            "perturbation_interval": 1,
        }
        bad = [
            f"search.{key}={getattr(self, key)} (must be >= {low})"
            for key, low in least.items()
            if getattr(self, key) < low
        ]
        if not 0 < self.quantile_fraction <= 0.5:
            bad.append(f"search.quantile_fraction={self.quantile_fraction} (must be in (0, 0.5])")
        if bad:
            raise ValueError("; ".join(bad))
        _check_selection(self)

    @property
    def selection(self) -> list[tuple[str, str]]:
        """``(metric, mode)`` of each objective, or of the one ranking metric."""
        if self.objectives:
            return [(name, trial_metrics.metric_mode(name)) for name in self.objectives]
        return [(self.metric, self.mode or trial_metrics.metric_mode(self.metric))]


def check_budget(sweep: SweepConfig, budget: int, key: str) -> None:
    """``ValueError`` when ASHA's first rung (``search.grace_period``) lies beyond a trial's
    budget (``key=budget``: ``train.epochs``, or ``prune.rounds`` of a pruning sweep)."""
    if sweep.method == "asha" and sweep.grace_period > budget:
        raise ValueError(
            f"search.grace_period={sweep.grace_period} is more than a trial's budget, "
            f"{key}={budget} (ASHA's max_t): lower it, or raise {key}"
        )


def _check_selection(sweep: SweepConfig) -> None:
    """``ValueError`` naming the ``search.*`` key when the metric, mode, objectives or pick rule
    cannot rank this sweep's trials."""
    if isinstance(sweep.objectives, str):
        raise ValueError(
            "search.objectives takes a list of two metrics, e.g. [val_accuracy,faithfulness]; "
            f"got {sweep.objectives!r}"
        )
    object.__setattr__(sweep, "objectives", tuple(sweep.objectives))  # Hydra gives a list
    names = sweep.objectives or (sweep.metric,)
    key = "search.objectives" if sweep.objectives else "search.metric"
    for name in names:
        if name not in trial_metrics.METRICS:
            raise ValueError(
                f"{key}: {name!r} is not a reported metric; choose one of "
                f"{list(trial_metrics.METRICS)}"
            )
    if sweep.mode not in (None, "min", "max"):
        raise ValueError(f"search.mode must be min or max (or null: inferred), not {sweep.mode!r}")
    if trial_metrics.extra_names(names) and sweep.method in IN_MEMORY_METHODS:
        raise ValueError(
            f"{key}={list(names)}: search={sweep.method} trials report only val_loss and "
            "val_accuracy; the other metrics are computed by trials of the pipeline's fit loop"
        )
    if sweep.objectives:
        _check_objectives(sweep)


def _check_objectives(sweep: SweepConfig) -> None:
    objectives = list(sweep.objectives)
    if len(objectives) != 2 or objectives[0] == objectives[1]:
        raise ValueError(
            "search.objectives takes two different metrics, e.g. [val_accuracy,faithfulness]; "
            f"got {objectives}"
        )
    if sweep.method != "optuna":
        raise ValueError(
            f"search.objectives needs search=optuna (Optuna's multi-objective TPE sampler "
            f"through Ray Tune); search={sweep.method} ranks trials by one metric: set "
            "search.metric instead"
        )
    rules = [*pareto.RULES, *objectives]
    if sweep.pick not in rules:
        raise ValueError(f"search.pick={sweep.pick!r} is not one of {rules}")
    if not sweep.pick_within >= 0:
        raise ValueError(f"search.pick_within must be >= 0, not {sweep.pick_within}")
