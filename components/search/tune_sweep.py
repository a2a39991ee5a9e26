"""Hyperparameter sweeps with Ray Tune over the pipeline's own training code.

Every trial runs :func:`components.training.fit.fit` (the code the pipeline trains with, not a
copy) on the ingested dataset and reports each epoch's metrics and checkpoint to Tune, so ASHA
can stop it, PBT can clone it, and the best trial can be reloaded. Search methods:

* ``fifo`` / ``random``: random search, every trial to the full budget;
* ``asha``: random search with the ASHA scheduler (Li et al., 2020) stopping poor trials early;
* ``pbt``: Population Based Training (Jaderberg et al., 2017): poor trials clone the weights of
  better ones and perturb their hyperparameters; a trial records whose weights it took;
* ``optuna``: Optuna's TPE sampler (Bergstra et al., 2011) through ``ray.tune.search.optuna``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

from components.data.reader import read_split
from components.search.space import split_trial_config, tune_space
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec, load_state, load_weights
from components.training.config import TrainConfig
from components.training.fit import fit

METHODS = ("fifo", "random", "asha", "pbt", "optuna")
TRIAL_FILE = "trial.json"


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
    """

    method: str = "asha"
    num_samples: int = 8
    max_concurrent: int = 2
    grace_period: int = 1
    reduction_factor: int = 2
    perturbation_interval: int = 2
    quantile_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"search.method={self.method!r} is not one of {list(METHODS)}")
        if self.num_samples < 1 or self.max_concurrent < 1:
            raise ValueError("search.num_samples and search.max_concurrent must be >= 1")


@dataclass
class SweepOutcome:
    """The sweep's trials and its best one."""

    best_config: dict
    best_metrics: dict
    best_checkpoint: str | None
    trials: list[dict] = field(default_factory=list)
    experiment_path: str = ""


def run_sweep(
    *,
    dataset_path: Path,
    spec: ModelSpec,
    train: TrainConfig,
    space: dict,
    sweep: SweepConfig,
    storage_path: Path,
    name: str = "sweep",
) -> SweepOutcome:
    """Run (or, if ``storage_path/name`` holds an interrupted sweep, resume) a Tune sweep.

    Ray must already be initialised. A trial that raises is recorded as failed; the sweep goes on.
    """
    base = {
        "dataset_path": str(Path(dataset_path).resolve()),
        "spec": asdict(spec),
        "train": asdict(train),
    }
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, base=base), {"cpu": 1})
    experiment = Path(storage_path).resolve() / name
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=False)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(space),
            tune_config=_tune_config(sweep, space, train.epochs),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(Path(storage_path).resolve()),
                # PBT clones other trials' checkpoints: deleting old ones would break exploits.
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=None if sweep.method == "pbt" else 2
                ),
                verbose=0,
            ),
        )
    return _outcome(tuner.fit(), experiment)


def _tune_config(sweep: SweepConfig, space: dict, epochs: int) -> tune.TuneConfig:
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


def sweep_trial(config: dict, base: dict) -> None:
    """One Tune trial: train the pipeline's model with the sampled hyperparameters."""
    import torch

    train_over, model_over = split_trial_config(config)
    cfg = TrainConfig(**{**base["train"], **train_over})
    raw = base["spec"]
    spec = ModelSpec(
        raw["name"],
        tuple(raw["input_shape"]),
        raw["num_classes"],
        raw["tiny"],
        {**raw["kwargs"], **model_over},
    )
    torch.set_num_threads(cfg.cpus_per_worker)
    x, y = read_split(base["dataset_path"], "train")
    vx, vy = read_split(base["dataset_path"], "val")
    torch.manual_seed(cfg.seed)
    model = spec.build()
    trial_id = tune.get_context().get_trial_id()
    resume, exploited_from = _restore(model, trial_id)

    def report(metrics: dict, folder: Path | None) -> None:
        metrics = {**metrics, "exploited_from": exploited_from}
        (folder / TRIAL_FILE).write_text(json.dumps({"trial_id": trial_id}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))

    fit(
        model,
        ShardBatches(x, y, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed),
        ShardBatches(vx, vy, batch_size=256, shuffle=False),
        cfg=cfg,
        spec=spec,
        report=report,
        resume=resume,
    )


def _restore(model, trial_id: str) -> tuple[dict | None, str]:
    """Resume from Tune's checkpoint; a checkpoint of another trial is a PBT exploit.

    After an exploit the weights and progress are the donor's, the optimiser starts afresh at
    the perturbed hyperparameters.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None, ""
    with checkpoint.as_directory() as folder:
        load_weights(folder, model)
        state = load_state(folder)
        donor = json.loads((Path(folder) / TRIAL_FILE).read_text())["trial_id"]
    if donor == trial_id:
        return state, ""
    return {"fit_state": state["fit_state"]}, donor


def _outcome(results, experiment: Path) -> SweepOutcome:
    trials = []
    for result in results:
        row = {"trial": Path(result.path).name if result.path else "", "config": result.config}
        if result.error is not None:
            row.update(status="failed", error=str(result.error).strip().splitlines()[-1][:300])
        else:
            metrics = result.metrics or {}
            row.update(
                status="done",
                epochs=metrics.get("training_iteration"),
                val_loss=metrics.get("val_loss"),
                val_accuracy=metrics.get("val_accuracy"),
                exploited=bool(_exploits(result)),
            )
        trials.append(row)
    best = results.get_best_result(metric="val_loss", mode="min", scope="all")
    return SweepOutcome(
        best_config=best.config,
        best_metrics={k: v for k, v in (best.metrics or {}).items() if isinstance(v, int | float)},
        best_checkpoint=best.checkpoint.path if best.checkpoint else None,
        trials=trials,
        experiment_path=str(experiment),
    )


def _exploits(result) -> list[str]:
    frame = result.metrics_dataframe
    if frame is None or "exploited_from" not in frame:
        return []
    return sorted({v for v in frame["exploited_from"].dropna() if v})
