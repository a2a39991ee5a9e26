"""The Ray Tune scheduler and search algorithm behind each search method.

One place maps ``search.method`` to Tune's objects: ASHA (Li et al., 2020), Population Based
Training (Jaderberg et al., 2017), Optuna's TPE (Bergstra et al., 2011), or random search with a
FIFO scheduler (also the scheduler of the STN, DARTS and random_ws trainables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

from components.search.space import tune_space

if TYPE_CHECKING:
    from components.search.tune_sweep import SweepConfig


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

        search_alg = ConcurrencyLimiter(OptunaSearch(seed=sweep.seed), sweep.max_concurrent)
    return tune.TuneConfig(
        metric="val_loss",
        mode="min",
        scheduler=scheduler,
        search_alg=search_alg,
        num_samples=sweep.num_samples,
    )
