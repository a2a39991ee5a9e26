"""The prune flow: ingest -> lottery-ticket rounds (each a Ray Train fit) -> report.

Callable from Python (``prune(overrides=["prune.rounds=4"])``), from the CLI
(``sennflow prune method=imp``; a bare ``method=``/``rounds=``/... is read as ``prune.<key>=``)
and from the Prefect UI, where :class:`PruneOptions` renders as a form. Round 0 trains the dense
network; each later round prunes by magnitude, rewinds and retrains the winning ticket, and
trains the same masks from a fresh initialisation as the control
(:mod:`components.pruning.lottery`).

The run folder holds ``prune/`` (initial and rewind weights, every round's masks, its ticket's
weights and its Ray Train checkpoints, ``state.json`` with the finished rounds), ``prune.json``,
``metrics.json`` and the report. ``--resume`` with ``run.id=<id>`` continues an interrupted run
in its saved config at its next unfinished round (``prune.rounds`` may grow).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Literal

from prefect import flow
from pydantic import Field

from flows.config import ConfigError, compose_with_defaults, to_group_config, to_settings
from flows.run import (
    FlowOptions,
    RunResult,
    all_overrides,
    check_training_fits,
    finish_run,
    open_run,
    report_data,
    resumed_config,
)
from flows.run_folder import check_run_dir_free, with_run_status
from tasks.ingest import ingest_task

DEFAULT_MODEL = "mlp"
# Keys of the prune group a user may give bare on the command line (``method=imp``).
BARE_KEYS = ("method", "rounds", "rate", "conv_rate", "output_rate", "scope", "rewind_epoch")


class PruneOptions(FlowOptions):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    method: Literal["imp"] | None = None
    rounds: int | None = Field(None, ge=1, description="pruning rounds after the dense one")
    rate: float | None = Field(None, gt=0, lt=1, description="fc share pruned per round")
    scope: Literal["layerwise", "global"] | None = None
    rewind_epoch: int | None = Field(None, ge=0, description="0: rewind to initialisation")
    data: str | None = Field(None, description="data source config (conf/data)")
    model: str | None = Field(None, description="model config (conf/model); default mlp")
    seed: int | None = None


PruneOptions.KEYS = {
    **{name: f"prune.{name}" for name in PruneOptions.model_fields},
    "data": "data",
    "model": "model",
    "seed": "seed",
}


class PruneResult(RunResult):
    """What a prune run returns: run folder, report, headline (the CLI prints it)."""


def qualify(overrides: list[str]) -> list[str]:
    """``method=imp`` -> ``prune.method=imp`` for the keys of :data:`BARE_KEYS`."""
    return [f"prune.{item}" if item.split("=", 1)[0] in BARE_KEYS else item for item in overrides]


def compose_prune(overrides: list[str]):
    """The config of a prune run: ``prune=default`` and ``model=mlp`` unless chosen."""
    return compose_with_defaults(qualify(overrides), {"prune": "default", "model": DEFAULT_MODEL})


# What ``--resume`` may change: where runs and Ray are, and how many rounds to prune.
RESUME_CHANGEABLE = ("run.", "ray.", "prune.rounds")


def prune_config(overrides: list[str], resume: bool = False):
    """The prune run's config (one composition) and, resuming, the run folder it continues: its
    saved config with the overrides of :data:`RESUME_CHANGEABLE` applied
    (:func:`flows.run.resumed_config`)."""
    cfg = compose_prune(overrides)
    if not resume:
        return cfg, None
    return resumed_config("prune", cfg, qualify(overrides), RESUME_CHANGEABLE)


def prune_settings(cfg):
    """The flow's settings and the validated :class:`PruneConfig`; ``ConfigError`` names the
    key (a rewind epoch the dense round may not reach included)."""
    from components.pruning.imp_config import PruneConfig

    settings = to_settings(cfg)
    config = to_group_config(cfg, "prune", PruneConfig)
    if config.rewind_epoch >= settings.train.epochs:
        raise ConfigError(
            f"prune.rewind_epoch={config.rewind_epoch} must be below "
            f"train.epochs={settings.train.epochs}: the dense round rewinds to an epoch it trains"
        )
    return settings, config


@flow(name="prune", log_prints=True)
@with_run_status
def prune(
    overrides: list[str] | None = None,
    options: PruneOptions | None = None,
    resume: bool = False,
) -> PruneResult:
    """Find lottery tickets by iterative magnitude pruning and report accuracy vs sparsity.

    Args:
        overrides: Hydra overrides, e.g. ``["prune.rounds=10", "model=cnn"]``; applied after
            ``options``.
        options: the common knobs as a typed form (the Prefect UI renders it).
        resume: continue the interrupted run of ``run.id`` at its next unfinished round.
    """
    from components.pruning.lottery import lottery_headline, lottery_section
    from tasks.prune import prune_task

    cfg, resume_dir = prune_config(all_overrides(options, overrides), resume)
    settings, config = prune_settings(cfg)
    if resume_dir is None:
        check_run_dir_free(settings.run.root, "prune", settings.run.id)
    dataset = ingest_task(settings.data, settings.run.cache_dir)
    spec = settings.model_spec(dataset.meta)
    if resume_dir is not None:
        _check_same_setup(resume_dir / "prune", spec, config)
    check_training_fits(settings)
    run = open_run("prune", settings, cfg, resume_dir=resume_dir)

    records = prune_task(
        dataset.path, spec, settings.train, config, settings.run, run.run_dir / "prune"
    )
    headline = lottery_headline(records)
    section = lottery_section(spec, config, records)
    report = report_data(
        run,
        dataset,
        title=f"sennflow prune: lottery tickets of {spec.name} on {settings.data.source}",
        headline=headline,
        prune=section,
    )
    files = {"prune.json": section}
    done = finish_run(run, settings, report, metrics={"headline": headline}, files=files)
    return PruneResult(**done.model_dump())


def _check_same_setup(folder: Path, spec, config) -> None:
    import json

    from components.pruning.lottery import LotteryStore, check_same_setup

    setup = json.loads(json.dumps({"spec": asdict(spec), "config": asdict(config)}))
    try:
        check_same_setup(LotteryStore(folder), setup)
    except ValueError as err:
        raise ConfigError(str(err)) from err
