"""The explain stage's time budget: measure one unit of each part, choose counts that fit.

An explanation stage that costs more than training is a defect (DESIGN.md). The post-hoc part of
the stage explains ``eval_samples`` test samples with every method and scores them (the ranking
needs these), re-explains ``robustness_samples`` of them under noise (sensitivity and stability:
about a dozen explanations per sample and method, the most expensive part), and probes the model
for the global surrogate (one model call per probe and feature group, plus one per row it is
fitted and checked on). Before any of it, one sample is explained by each method and scored once
(the pilot, :meth:`components.explain.posthoc.stage._Stage._pilot`); from those unit costs
:func:`choose_counts` picks the largest counts that fit the seconds left, never above the
configured ones:

1. If everything as configured fits, nothing changes.
2. Otherwise the explained-and-scored samples, which the ranking needs, come first: up to
   :data:`MIN_EVAL_SAMPLES` of them; if fewer fit, the perturbation samples of LIME / C-LIME /
   KernelSHAP are halved (down to :data:`MIN_PERTURBATIONS`) until they do. Of the seconds
   left, the surrogate and the robustness metrics each keep up to a fifth of the budget (what
   they need at the configured counts, if less), and more samples get the rest.
3. The surrogate then takes what it needs of the seconds left, rows first, then probes (skipped
   below :data:`MIN_PROBES`); robustness takes the rest. It runs last, and its count is checked
   again against what the methods measurably took on the explained samples.

The unit costs of one sample overstate the per-sample cost of batched calls, so the estimates
err on the safe side; the stage also checks the clock before each method, each robustness method
and the surrogate and skips what no longer fits, so an estimate that was too low (a machine busier
than during the pilot) costs at most one unit. The first method is always explained and scored on
at least one sample, so there is a recommendation even when the prototype explanations before it
used up the budget. When the budget binds, the counts depend on the machine's speed: give explicit
counts and a large ``budget_s`` for results that must repeat exactly.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

AUTO_FLOOR_S = 30.0  # ``auto`` never gives less: a seconds-long tiny training would starve it
AUTO_UNKNOWN_S = 120.0  # ``auto`` when no training time is known (re-explaining a saved run)
MIN_EVAL_SAMPLES = 8  # fewer samples make the chooser's bootstrap intervals meaningless
MIN_PERTURBATIONS = 64  # LIME / KernelSHAP need about as many samples as groups (64 by default)
MIN_PROBES = 8  # probes of the surrogate's feature ranking, below which it is skipped
RESERVE = 0.05  # share of the budget kept for the ranking, SP-LIME and the bookkeeping
SHARE = 0.2  # share of the budget the surrogate and the robustness metrics each may keep
SURROGATE_BYTES = 256 * 2**20  # decoded input the surrogate may hold per split
SURROGATE_PROBES = 256  # inputs probed to rank the surrogate's features (Karim et al.)


def resolve_budget(budget_s: float | str, train_seconds: float | None = None) -> float:
    """Seconds the explain stage may take: ``budget_s``, or for ``auto`` the training stage's
    wall time (at least :data:`AUTO_FLOOR_S`; :data:`AUTO_UNKNOWN_S` when it is unknown)."""
    if budget_s != "auto":
        return float(budget_s)
    if train_seconds is None:
        return AUTO_UNKNOWN_S
    return max(float(train_seconds), AUTO_FLOOR_S)


@dataclass(frozen=True)
class Counts:
    """How much of each part runs; what the config asks for, or what fits the budget.

    Attributes:
        eval_samples: test samples every method explains and is scored on.
        robustness_samples: of those, how many are re-explained under noise.
        perturbation_samples: model calls per LIME / C-LIME / KernelSHAP explanation.
        surrogate_probes: inputs probed, once per feature group, to rank the surrogate's features.
        surrogate_rows: training rows the surrogate is fitted on (as many test rows held out).
    """

    eval_samples: int
    robustness_samples: int
    perturbation_samples: int
    surrogate_probes: int
    surrogate_rows: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class UnitCosts:
    """Seconds measured by the pilot.

    Attributes:
        attribution: per method, explaining one sample (at the configured perturbations).
        metrics: scoring one sample's attributions with every metric (one method).
        forward_row: one input row through the model (no gradient).
        robustness_factor: explanations per sample and method of the robustness metrics.
    """

    attribution: dict[str, float]
    metrics: float
    forward_row: float
    robustness_factor: float

    def explain(self, sampling: frozenset[str], scale: float) -> float:
        """One sample explained by every method, sampling methods at ``scale`` x perturbations."""
        return sum(t * (scale if m in sampling else 1.0) for m, t in self.attribution.items())

    def evaluation(self, sampling: frozenset[str], scale: float) -> float:
        """One sample explained and scored by every method."""
        return self.explain(sampling, scale) + self.metrics * len(self.attribution)

    def robustness(self, sampling: frozenset[str], scale: float) -> float:
        """One sample's robustness metrics for every method."""
        return self.robustness_factor * self.explain(sampling, scale)

    def surrogate(self, probes: int, rows: int, groups: int) -> float:
        """Probing ``probes`` inputs per group and labelling ``rows`` rows of each split."""
        return self.forward_row * (probes * (groups + 1) + 2 * rows)


def choose_counts(
    requested: Counts,
    costs: UnitCosts,
    seconds: float,
    *,
    sampling: frozenset[str],
    surrogate_groups: int,
) -> Counts:
    """The largest counts, none above ``requested``, whose estimated cost fits ``seconds``.

    Args:
        requested: the configured counts (upper bounds).
        costs: the pilot's unit costs.
        seconds: what the parts may spend (after the pilot and :data:`RESERVE`).
        sampling: the configured methods whose cost scales with ``perturbation_samples``.
        surrogate_groups: features the surrogate probes per input (0: no surrogate).

    Returns:
        The chosen :class:`Counts` (see the module docstring for the order of the cuts).
    """
    if _cost(requested, requested, costs, sampling, surrogate_groups) <= seconds:
        return requested
    surrogate_need = costs.surrogate(
        requested.surrogate_probes, requested.surrogate_rows, surrogate_groups
    )
    robust_need = requested.robustness_samples * costs.robustness(sampling, 1.0)
    first, perturbations = _evaluation(requested, costs, seconds, sampling)
    scale = perturbations / requested.perturbation_samples
    unit = costs.evaluation(sampling, scale)
    kept = min(surrogate_need, SHARE * seconds) + min(robust_need, SHARE * seconds)
    more = fits(seconds - first * unit - kept, unit)
    samples = min(requested.eval_samples, first + more)
    left = seconds - samples * unit
    reserved = min(robust_need, SHARE * seconds)
    probes, rows = _surrogate(requested, costs, left - reserved, surrogate_groups)
    left -= costs.surrogate(probes, rows, surrogate_groups)
    per_sample = costs.robustness(sampling, scale)
    robust = min(requested.robustness_samples, samples, fits(left, per_sample))
    return Counts(samples, robust, perturbations, probes, rows)


def _cost(counts: Counts, requested: Counts, costs, sampling, groups: int) -> float:
    scale = counts.perturbation_samples / requested.perturbation_samples
    return (
        counts.eval_samples * costs.evaluation(sampling, scale)
        + counts.robustness_samples * costs.robustness(sampling, scale)
        + costs.surrogate(counts.surrogate_probes, counts.surrogate_rows, groups)
    )


def _evaluation(requested: Counts, costs: UnitCosts, seconds: float, sampling) -> tuple[int, int]:
    """The explained-and-scored samples' first claim: up to :data:`MIN_EVAL_SAMPLES` (at least
    one), and the perturbations at which they fit."""
    perturbations = requested.perturbation_samples
    floor = min(perturbations, MIN_PERTURBATIONS)
    wanted = min(requested.eval_samples, MIN_EVAL_SAMPLES)
    while True:
        scale = perturbations / requested.perturbation_samples
        samples = min(wanted, fits(seconds, costs.evaluation(sampling, scale)))
        if samples >= wanted or perturbations <= floor or not sampling:
            return max(1, samples), perturbations
        perturbations = max(floor, perturbations // 2)


def _surrogate(requested: Counts, costs: UnitCosts, seconds: float, groups: int):
    """Probes and rows for the surrogate; ``(0, 0)`` when too few probes fit."""
    if groups == 0 or requested.surrogate_probes == 0:
        return 0, 0
    row_cost = 2 * costs.forward_row
    rows = min(requested.surrogate_rows, fits(seconds / 2, row_cost))
    probe_cost = costs.forward_row * (groups + 1)
    probes = min(requested.surrogate_probes, fits(seconds - rows * row_cost, probe_cost))
    if probes < min(MIN_PROBES, requested.surrogate_probes) or rows < 2:
        return 0, 0
    return probes, rows


def fits(seconds: float, unit: float) -> int:
    """How many units of ``unit`` seconds fit into ``seconds`` (0 when none)."""
    if unit <= 0:
        return 2**31
    return max(0, math.floor(seconds / unit))


def rows_in_memory(feature_shape) -> int:
    """Rows of ``feature_shape`` (float32) within :data:`SURROGATE_BYTES`."""
    return max(2, SURROGATE_BYTES // (4 * math.prod(int(s) for s in feature_shape)))


class Clock:
    """Wall time of the stage against its budget, and the seconds of each part.

    Args:
        budget_s: the seconds allowed; None: no limit (every count as configured).
    """

    def __init__(self, budget_s: float | None) -> None:
        self.budget_s = budget_s
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        """Seconds left (``inf`` without a budget)."""
        return math.inf if self.budget_s is None else self.budget_s - self.elapsed()

    def fits(self, seconds: float) -> bool:
        """Whether ``seconds`` more keep the stage within its budget."""
        return seconds <= self.remaining()

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Adds the block's wall time to part ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def skip(self, what: str) -> None:
        """Records a part left out to stay within the budget."""
        self.skipped.append(what)


def counts_of(config) -> Counts:
    """The counts an :class:`~components.explain.config.ExplainConfig` asks for."""
    return Counts(
        eval_samples=config.eval_samples,
        robustness_samples=min(config.robustness_samples, config.eval_samples),
        perturbation_samples=config.perturbation_samples,
        surrogate_probes=SURROGATE_PROBES,
        surrogate_rows=config.surrogate_samples,
    )


def with_counts(config, counts: Counts):
    """``config`` with the chosen counts (the ones a config holds)."""
    return replace(
        config,
        eval_samples=counts.eval_samples,
        robustness_samples=counts.robustness_samples,
        perturbation_samples=counts.perturbation_samples,
    )
