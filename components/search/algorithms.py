"""The Ray Tune scheduler and search algorithm behind each search method.

One place maps ``search.method`` to Tune's objects: ASHA (Li et al., 2020), Population Based
Training (Jaderberg et al., 2017), Optuna's TPE (Bergstra et al., 2011), or random search with a
FIFO scheduler (also the scheduler of the STN, DARTS and random_ws trainables), and:

* ``hyperband``: synchronous HyperBand (Li et al., JMLR 2018) by Tune's ``HyperBandScheduler``:
  brackets of successive halving, each decided only when all its trials reached the bracket's
  milestone; ``max_t`` is the epoch budget, ``eta`` is ``reduction_factor``. As in Tune, the
  brackets fill in turn starting from the one without early stopping, and trials that wait for
  their bracket are paused (they resume from their own checkpoint).
* ``pb2``: Population Based Bandits (Parker-Holder et al., NeurIPS 2020) by Tune's ``PB2``: PBT's
  exploit, with the explore step choosing the new hyperparameters by time-varying GP-UCB over
  ``[low, high]`` of each dimension (:func:`pb2_bounds`). Departures: Tune fits the GP with
  scikit-learn rather than the paper's GPy; the bounds are linear, so a log-uniform dimension is
  explored on a linear scale; ``choice`` dimensions are refused (PB2 models continuous ones).
* ``bohb``: BOHB (Falkner et al., ICML 2018): hpbandster's kernel-density model proposes the
  configurations, Tune's ``HyperBandForBOHB`` runs them in HyperBand brackets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    PopulationBasedTraining,
)
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

from components.search.space import flatten_space, tune_space

if TYPE_CHECKING:
    from components.search.sweep_config import SweepConfig


def tune_config(sweep: SweepConfig, space: dict, epochs: int) -> tune.TuneConfig:
    """Tune's scheduler, searcher and selection metric for ``sweep`` over ``space``, with
    ``epochs`` the budget of one full trial."""
    scheduler = FIFOScheduler()
    search_alg = BasicVariantGenerator(random_state=sweep.seed, max_concurrent=sweep.max_concurrent)
    if sweep.method == "asha":
        scheduler = ASHAScheduler(
            max_t=epochs, grace_period=sweep.grace_period, reduction_factor=sweep.reduction_factor
        )
    elif sweep.method == "pbt":
        scheduler = PopulationBasedTraining(
            time_attr="training_iteration",  # the interval is in epochs (default: seconds)
            synch=True,  # decide when the whole population reached the interval: reproducible
            perturbation_interval=sweep.perturbation_interval,
            quantile_fraction=sweep.quantile_fraction,
            hyperparam_mutations=tune_space(space),
        )
    elif sweep.method == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = ConcurrencyLimiter(
            OptunaSearch(seed=sweep.seed, **_objectives(sweep)), sweep.max_concurrent
        )
    elif sweep.method == "hyperband":
        scheduler = HyperBandScheduler(max_t=epochs, reduction_factor=sweep.reduction_factor)
        # A bracket waits for all its trials, and a paused trial counts against a searcher's
        # max_concurrent: capping it would leave brackets unfilled. Resources cap the running.
        search_alg = BasicVariantGenerator(random_state=sweep.seed)
    elif sweep.method == "pb2":
        from ray.tune.schedulers.pb2 import PB2  # imports scikit-learn's GP: only when used

        scheduler = PB2(
            time_attr="training_iteration",
            synch=True,
            perturbation_interval=sweep.perturbation_interval,
            quantile_fraction=sweep.quantile_fraction,
            hyperparam_bounds=pb2_bounds(space),
        )
    elif sweep.method == "bohb":
        scheduler, search_alg = _bohb(sweep, epochs)
    return tune.TuneConfig(
        # Multi-objective: the searcher holds the metrics; Tune's single metric stays unset.
        metric=None if sweep.objectives else sweep.selection[0][0],
        mode=None if sweep.objectives else sweep.selection[0][1],
        scheduler=scheduler,
        search_alg=search_alg,
        num_samples=sweep.num_samples,
    )


def _objectives(sweep: SweepConfig) -> dict:
    """OptunaSearch's metric and mode lists for a multi-objective sweep (its default
    ``TPESampler`` then runs multi-objective TPE, Ozaki et al. 2020); {} for one metric."""
    if not sweep.objectives:
        return {}
    return {
        "metric": [name for name, _ in sweep.selection],
        "mode": [mode for _, mode in sweep.selection],
    }


def pb2_bounds(space: dict) -> dict[str, list[float]]:
    """PB2's ``[low, high]`` per dimension of ``space``; ``ValueError`` names a dimension PB2
    cannot explore (``choice``: PB2's GP models continuous values only)."""
    bounds = {}
    for name, spec in flatten_space(space).items():
        if spec.get("type") not in ("uniform", "loguniform", "randint"):
            raise ValueError(
                f"search=pb2 explores bounded numeric dimensions only: {name!r} is "
                f"{spec.get('type')!r} (use uniform, loguniform or randint, or search=pbt)"
            )
        # randint's high is exclusive; PB2 casts its proposals to int by truncation.
        high = spec["high"] - 1 if spec["type"] == "randint" else spec["high"]
        bounds[name] = [spec["low"], high]
    if not bounds:
        raise ValueError("search=pb2 needs a search.space with at least one numeric dimension")
    return bounds


def _bohb(sweep: SweepConfig, epochs: int):
    """BOHB's HyperBand scheduler and its model-based searcher."""
    try:
        from ray.tune.schedulers.hb_bohb import HyperBandForBOHB
        from ray.tune.search.bohb import TuneBOHB
    except ImportError as err:
        raise ValueError(
            f"search=bohb needs hpbandster and ConfigSpace (pip install sennflow): {err}"
        ) from err
    scheduler = HyperBandForBOHB(max_t=epochs, reduction_factor=sweep.reduction_factor)
    # TuneBOHB counts running trials only (HyperBandForBOHB tells it which are paused), so its
    # own cap is safe where a ConcurrencyLimiter's would count paused trials.
    return scheduler, TuneBOHB(seed=sweep.seed, max_concurrent=sweep.max_concurrent)
