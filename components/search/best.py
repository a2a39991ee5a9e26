"""What a finished sweep hands on: the model to retrain, the report's section, the files it keeps.

The search method picks what is retrained (:func:`best_model`):

* hyperparameter methods (``asha``, ``pbt``, ``optuna``, ``random``, ``fifo``): the configured
  model with the best trial's ``train.*`` / ``model.*`` values;
* ``stn``: the configured model with the best STN trial's final dropout (if the model has a
  ``dropout`` parameter) and weight decay;
* ``darts`` / ``random_ws``: the best genotype as the model's ``genotype``, or as the
  ``backbone_genotype`` of the models in :data:`GENOTYPE_BACKBONE_MODELS`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from components.models.nas_ops import PRIMITIVES
from components.search.space import apply_model_overrides, apply_train_overrides
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.errors import ModelSpecError

if TYPE_CHECKING:
    from components.search.tune_sweep import SweepOutcome

# Prototype models that take a searched cell as the backbone of their encoder.
GENOTYPE_BACKBONE_MODELS = ("protopnet", "st_protopnet")
GENOTYPE_METHODS = ("darts", "random_ws")


def best_model(
    spec: ModelSpec, train: TrainConfig, method: str, outcome: SweepOutcome
) -> tuple[ModelSpec, TrainConfig]:
    """The model spec and training config that retrain the sweep's best result.

    Args:
        spec: the configured model (the one the hyperparameter methods searched).
        train: the configured training.
        method: the search method (``search.method``).
        outcome: the finished sweep.
    """
    if method == "stn":
        return _stn_best(spec, train, outcome)
    if method in GENOTYPE_METHODS:
        key = "backbone_genotype" if spec.name in GENOTYPE_BACKBONE_MODELS else "genotype"
        return replace(spec, kwargs={**spec.kwargs, key: outcome.genotype}), train
    best = outcome.best_config
    return apply_model_overrides(spec, best), apply_train_overrides(train, best)


def _best_trial(outcome: SweepOutcome) -> dict:
    """The row of :attr:`SweepOutcome.trials` whose config is the best one ({} if none)."""
    return next((t for t in outcome.trials if t["config"] == outcome.best_config), {})


def _stn_best(
    spec: ModelSpec, train: TrainConfig, outcome: SweepOutcome
) -> tuple[ModelSpec, TrainConfig]:
    """The best STN trial's final hyperparameters applied to the configured model.

    STN's penalty is ``wd * ||w||^2``; torch's Adam/SGD ``weight_decay`` adds ``wd * w`` to the
    gradient (``wd / 2 * ||w||^2``), hence the factor 2. Input noise and shift are not part of
    the pipeline's training and are only reported.
    """
    final = outcome.schedules[_best_trial(outcome)["trial"]][-1]
    train = replace(train, weight_decay=2 * final["weight_decay"])
    with_dropout = replace(spec, kwargs={**spec.kwargs, "dropout": final["dropout"]})
    try:
        with_dropout.build()
    except ModelSpecError:
        return spec, train  # the model has no dropout parameter
    return with_dropout, train


def search_summary(method: str, outcome: SweepOutcome) -> dict:
    """The report's ``search`` section (see ``components.report``) and ``metrics.json``'s."""
    best = _best_trial(outcome)
    return {
        "method": method,
        "metric": "val_loss",
        "mode": "min",
        "experiment_path": outcome.experiment_path,
        "trials": outcome.trials,
        "best": {
            "trial": best.get("trial"),
            "config": outcome.best_config,
            "val_loss": outcome.best_metrics.get("val_loss"),
            "val_accuracy": outcome.best_metrics.get("val_accuracy"),
        },
        "schedules": outcome.schedules,
        "genotype": outcome.genotype,
        "alphas": outcome.alphas,
        "primitives": list(PRIMITIVES),
    }


def search_files(outcome: SweepOutcome) -> dict[str, object]:
    """The JSON files a sweep's run folder keeps, by name: ``search.json`` always,
    ``genotype.json`` (DARTS / random_ws) and ``stn_schedules.json`` (STN) when there are any."""
    files: dict[str, object] = {
        "search.json": {
            "best_config": outcome.best_config,
            "best_metrics": outcome.best_metrics,
            "best_checkpoint": outcome.best_checkpoint,
            "experiment_path": outcome.experiment_path,
            "trials": outcome.trials,
        }
    }
    if outcome.genotype is not None:
        files["genotype.json"] = outcome.genotype
    if outcome.schedules:
        files["stn_schedules.json"] = outcome.schedules
    return files
