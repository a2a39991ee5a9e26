"""What a finished sweep hands on: the model to retrain, the report's section, the files it keeps.

The search method picks what is retrained (:func:`best_model`):

* hyperparameter methods (``asha``, ``pbt``, ``optuna``, ``hyperband``, ``pb2``, ``bohb``,
  ``random``, ``fifo``): the configured model with the best trial's ``train.*`` / ``model.*``
  values (best by ``search.metric``; with ``search.objectives``, the Pareto front's point
  ``search.pick`` chose);
* ``stn``: the configured model, its fit loop replaying the best STN trial's learned schedule
  (dropout, weight decay, augmentation strengths) epoch by epoch;
* ``darts`` / ``random_ws`` / ``enas``: the best genotype as the model's ``genotype``, or as the
  ``backbone_genotype`` of the models in :data:`GENOTYPE_BACKBONE_MODELS`;
* ``bossnas``: the searched blocks as the ``architecture`` of ``bossnas_net`` (the only model
  that takes one: :func:`check_retrain_model` refuses others before the sweep).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from components.models.nas_ops import PRIMITIVES
from components.search.space import apply_model_overrides, apply_train_overrides
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.replay import AUGMENTATIONS

if TYPE_CHECKING:
    from components.search.tune_sweep import SweepOutcome

# Prototype models that take a searched cell as the backbone of their encoder.
GENOTYPE_BACKBONE_MODELS = ("protopnet", "st_protopnet")
GENOTYPE_METHODS = ("darts", "random_ws", "enas")
# Methods whose architecture only their own model can take, by the model's name.
ARCHITECTURE_MODELS = {"bossnas": "bossnas_net"}
# What a replayed STN schedule sets each epoch (components/training/replay.py).
REPLAYED = ("dropout", "weight_decay", *AUGMENTATIONS)


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
    if method in ARCHITECTURE_MODELS:
        architecture = {"blocks": (outcome.genotype or {}).get("blocks")}
        return replace(spec, kwargs={**spec.kwargs, "architecture": architecture}), train
    if method in GENOTYPE_METHODS:
        key = "backbone_genotype" if spec.name in GENOTYPE_BACKBONE_MODELS else "genotype"
        return replace(spec, kwargs={**spec.kwargs, key: outcome.genotype}), train
    best = outcome.best_config
    return apply_model_overrides(spec, best), apply_train_overrides(train, best)


def check_retrain_model(method: str, model: str) -> None:
    """``ValueError`` when the sweep's retrain could not take the architecture ``method``
    finds: a BossNAS architecture builds only ``bossnas_net``."""
    wanted = ARCHITECTURE_MODELS.get(method)
    if wanted is not None and model != wanted:
        raise ValueError(
            f"search={method} retrains its searched architecture as model={wanted}, not "
            f"model={model}; leave model unset or choose model={wanted}"
        )


def _best_trial(outcome: SweepOutcome) -> dict:
    """The row of :attr:`SweepOutcome.trials` retrained ({} if none)."""
    return next((t for t in outcome.trials if t["trial"] == outcome.best_trial), {})


def _stn_best(
    spec: ModelSpec, train: TrainConfig, outcome: SweepOutcome
) -> tuple[ModelSpec, TrainConfig]:
    """The configured model, retrained replaying the best STN trial's schedule epoch by epoch
    (``TrainConfig.hyper_schedule``, see :mod:`components.training.replay`)."""
    return spec, replace(train, hyper_schedule=replayed_schedule(outcome))


def replayed_schedule(outcome: SweepOutcome) -> tuple[dict, ...]:
    """The best STN trial's schedule as the fit loop replays it, one row per epoch.

    STN's penalty is ``wd * ||w||^2``; torch's Adam/SGD ``weight_decay`` adds ``wd * w`` to the
    gradient (``wd / 2 * ||w||^2``), hence the factor 2. Perturbation scales and the shift's
    probabilities are the STN's own and are not replayed. Past the schedule's last epoch the
    retrain keeps its last row.
    """
    schedule = (outcome.schedules or {}).get(_best_trial(outcome).get("trial"), [])
    rows = []
    for row in schedule:
        kept = {k: row[k] for k in REPLAYED if k in row}
        if "weight_decay" in kept:
            kept["weight_decay"] = 2 * kept["weight_decay"]
        rows.append({"epoch": row.get("epoch", len(rows)), **kept})
    return tuple(rows)


def search_summary(method: str, outcome: SweepOutcome, retrained: bool = True) -> dict:
    """The report's ``search`` section (see ``components.report``) and ``metrics.json``'s;
    ``retrained``: whether the sweep goes on to retrain its pick (``search.retrain``)."""
    best = _best_trial(outcome)
    ranked_by = [outcome.metric, *((outcome.pareto or {}).get("objectives") or [])]
    return {
        "method": method,
        "retrained": retrained,
        "metric": outcome.metric,
        "mode": outcome.mode,
        "experiment_path": outcome.experiment_path,
        "trials": outcome.trials,
        "best": {
            "trial": best.get("trial"),
            "config": outcome.best_config,
            **_selected_numbers(outcome.best_metrics, ranked_by),
        },
        "pareto": outcome.pareto,
        "schedules": outcome.schedules,
        "replayed_schedule": list(replayed_schedule(outcome)) if method == "stn" else [],
        "genotype": outcome.genotype,
        "alphas": outcome.alphas,
        # A search over search.darts.ops records its op set with the alphas.
        "primitives": list((outcome.alphas or {}).get("primitives") or PRIMITIVES),
    }


def _selected_numbers(metrics: dict, ranked_by: list[str]) -> dict:
    """The best trial's numbers for the report: the epoch it was selected at (a pruning
    trial's report has rounds instead), val loss and accuracy, and what it was ranked by."""
    names = dict.fromkeys(("epoch", "val_loss", "val_accuracy", *ranked_by))
    return {name: metrics.get(name) for name in names if name != "epoch" or "epoch" in metrics}


def search_files(outcome: SweepOutcome) -> dict[str, object]:
    """The JSON files a sweep's run folder keeps, by name: ``search.json`` always,
    ``genotype.json`` (DARTS / random_ws) and ``stn_schedules.json`` (STN) when there are any."""
    files: dict[str, object] = {
        "search.json": {
            "best_config": outcome.best_config,
            "best_metrics": outcome.best_metrics,
            "best_checkpoint": outcome.best_checkpoint,
            "experiment_path": outcome.experiment_path,
            "metric": outcome.metric,
            "mode": outcome.mode,
            "pareto": outcome.pareto,
            "trials": outcome.trials,
        }
    }
    if outcome.genotype is not None:
        files["genotype.json"] = outcome.genotype
    if outcome.schedules:
        files["stn_schedules.json"] = outcome.schedules
    return files
