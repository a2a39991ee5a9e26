"""``train.self_distill=iterative`` on Ray Train: each round (and each round's teacher-only probe)
is one :func:`~components.training.ray_trainer.train_with_ray` fit in ``run_dir/rounds/<name>``;
the last round's checkpoints become the run's ``checkpoints/best`` and ``checkpoints/last``.

The rounds and their weights are :mod:`components.training.self_distill_rounds`'s; every round
starts from the same seeded initialisation, so a round with ``xi = 1`` reproduces round 0, as the
kernel setting's ``alpha = 1`` student is the initial fit.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from components import atomic
from components.training.checkpoint import ModelSpec
from components.training.config import TrainConfig
from components.training.ray_trainer import TrainOutcome, train_with_ray
from components.training.self_distill_rounds import checkpoint_val_probs, train_rounds

log = logging.getLogger(__name__)


def check_iterative(spec: ModelSpec, cfg: TrainConfig) -> None:
    """Fail before any fit if this run cannot self-distil in rounds (a ``ValueError``)."""
    spec.build(load_pretrained=False).check_soft_targets()  # SoftTargetsError is a ValueError
    if cfg.final_layer != "standard":
        raise ValueError(
            "train.self_distill=iterative needs train.final_layer=standard "
            f"(got {cfg.final_layer!r}): a boosted final layer trains without soft targets"
        )
    if cfg.resume_from:
        raise ValueError("train.self_distill=iterative cannot resume from train.resume_from")


def train_rounds_with_ray(
    *,
    dataset_path: Path | str,
    local_dataset: Path,
    spec: ModelSpec,
    cfg: TrainConfig,
    run_dir: Path,
    storage_path: str | None = None,
    logger: logging.Logger | logging.LoggerAdapter = log,
    **train_kwargs,
) -> TrainOutcome:
    """Round 0 and ``cfg.self_distill_rounds`` distillation rounds, each a Ray Train fit.

    Args:
        dataset_path: the dataset as the workers read it (a folder or a staged URI).
        local_dataset: the dataset folder on the driver (validation predictions for ``xi_k``).
        spec, cfg: the model and training configuration (``cfg.self_distill == "iterative"``).
        run_dir: the run folder.
        storage_path: Ray's storage for the run; each fit gets its own sub-folder.
        logger: where each finished round is told.
        train_kwargs: passed to every :func:`train_with_ray` (``on_epoch``, ``augment``, ...).

    Returns:
        The last round's outcome with the run's checkpoint paths and ``self_distill_rounds``.
    """
    check_iterative(spec, cfg)
    run_dir = Path(run_dir)
    fits = 1 + 2 * cfg.self_distill_rounds  # round 0, then a probe and a round each
    started = iter(range(fits))
    on_epoch = train_kwargs.pop("on_epoch", None)

    def train_round(name: str, teacher):
        storage = f"{storage_path.rstrip('/')}/{name}" if storage_path else None
        if on_epoch is not None:
            offset = next(started) * cfg.epochs
            train_kwargs["on_epoch"] = _run_wide_epochs(on_epoch, offset, fits * cfg.epochs)
        return train_with_ray(
            dataset_path=dataset_path,
            spec=spec,
            cfg=cfg,
            run_dir=run_dir / "rounds" / name,
            storage_path=storage,
            teacher=teacher,
            logger=logger,
            **train_kwargs,
        )

    def tell(row: dict) -> None:
        logger.info(
            "self-distillation round %d: xi=%.3f (unclipped %.3f), val_accuracy=%s",
            row["round"],
            row["xi"],
            row["xi_unclipped"],
            row["val_accuracy"],
        )

    outcome, rows = train_rounds(
        cfg.self_distill_rounds,
        train_round,
        lambda checkpoint: checkpoint_val_probs(checkpoint, local_dataset),
        on_round=tell,
    )
    out = run_dir / "checkpoints"
    return dataclasses.replace(
        outcome,
        best_checkpoint=atomic.copy_tree(outcome.best_checkpoint, out / "best"),
        last_checkpoint=atomic.copy_tree(outcome.last_checkpoint, out / "last"),
        self_distill_rounds=rows,
    )


def _run_wide_epochs(on_epoch, offset: int, planned: int):
    """``on_epoch`` with a fit's epochs counted on from the ``offset`` epochs planned for the
    fits before it, out of ``planned``: one progress bar for the whole run."""
    return lambda metrics: on_epoch(
        {**metrics, "epoch": offset + metrics["epoch"], "epochs_planned": planned}
    )
