"""The pfn-train flow: fit a prior-data fitted network (Müller et al., ICLR 2022) on tasks drawn
from a prior through Ray Train, then write its weights and a small report.

Callable from Python (``pfn_train(overrides=["prior=bnn", "pfn.steps=500"])``) and from the CLI
(``sennflow pfn-train prior=gp|bnn``; ``prior=`` chooses the ``conf/pfn`` option). The run
folder holds ``checkpoints/pfn.safetensors`` (:mod:`components.pfn.weights`), which
``sennflow run model=pfn +model.params.pretrained=<run folder>`` loads (a ``bnn``
classification PFN), ``pfn.json`` (the held-out loss every ``pfn.checkpoint_every`` steps),
``metrics.json`` and the report.
"""

from __future__ import annotations

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
)
from flows.run_folder import check_run_dir_free, with_run_status

DEFAULT_PRIOR = "gp"


class PFNTrainOptions(FlowOptions):
    """The common knobs as a typed form; each set field becomes a Hydra override."""

    prior: Literal["gp", "bnn"] | None = Field(None, description="the prior (conf/pfn)")
    steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    seed: int | None = None


PFNTrainOptions.KEYS = {
    "prior": "pfn",
    "steps": "pfn.steps",
    "batch_size": "pfn.batch_size",
    "seed": "seed",
}


class PFNTrainResult(RunResult):
    """What a pfn-train run returns: run folder, report, headline (the CLI prints it)."""


def qualify(overrides: list[str]) -> list[str]:
    """``prior=bnn`` -> ``pfn=bnn`` (the ``conf/pfn`` option)."""
    return [f"pfn={o.split('=', 1)[1]}" if o.startswith("prior=") else o for o in overrides]


def compose_pfn(overrides: list[str]):
    """The config of a pfn-train run: ``pfn=gp`` unless ``prior=`` chooses.

    Raises:
        ConfigError: ``prior=`` names no ``conf/pfn`` option.
    """
    from flows.config import CONF_DIR

    known = sorted(path.stem for path in (CONF_DIR / "pfn").glob("*.yaml"))
    for item in qualify(overrides):
        if item.startswith("pfn=") and item.removeprefix("pfn=") not in known:
            raise ConfigError(
                f"prior={item.removeprefix('pfn=')}: unknown prior, choose one of "
                f"{', '.join(known)} (conf/pfn)"
            )
    return compose_with_defaults(qualify(overrides), {"pfn": DEFAULT_PRIOR})


def pfn_config(cfg):
    """The composed ``pfn`` group as a ``PFNTrainConfig`` (``ConfigError`` names the key)."""
    from components.pfn.config import PFNTrainConfig

    return to_group_config(cfg, "pfn", PFNTrainConfig, default=DEFAULT_PRIOR)


def pfn_report_data(run, config, outcome: dict, headline: dict):
    """The report of a pfn-train run (``run``: its ``OpenRun``): the held-out and training
    loss per logged optimiser step (rows keyed ``step``, so the curves' axis says so)."""
    from components.report import ReportData

    history = [
        {"step": row["step"], "stage": "prior", **{k: row[k] for k in ("train_loss", "val_loss")}}
        for row in outcome["history"]
    ]
    return ReportData(
        title=f"sennflow pfn-train: a PFN fitted on the {config.prior} prior ({config.task})",
        run_id=run.run_dir.name,
        headline=headline,
        metrics={},
        history=history,
        config_yaml=run.config_yaml,
        meta=run.meta,
        data_meta={"source": {"name": f"prior={config.prior}", **config.architecture()}},
        explanations=None,
        class_names=[],
        feature_shape=(config.architecture()["num_features"],),
    )


@flow(name="pfn-train", log_prints=True)
@with_run_status
def pfn_train(
    overrides: list[str] | None = None, options: PFNTrainOptions | None = None
) -> PFNTrainResult:
    """Fit a PFN on the configured prior and save its weights.

    Args:
        overrides: Hydra overrides, e.g. ``["prior=bnn", "pfn.steps=500"]``; applied after
            ``options``.
        options: the common knobs as a typed form (the Prefect UI renders it).
    """
    from tasks.pfn import pfn_train_task

    cfg = compose_pfn(all_overrides(options, overrides))
    settings = to_settings(cfg)
    check_run_dir_free(settings.run.root, "pfn", settings.run.id)
    config = pfn_config(cfg)
    check_training_fits(settings, train=False, pfn=config)
    run = open_run("pfn", settings, cfg)
    outcome = pfn_train_task(config, settings.run, run.run_dir)
    last = outcome["history"][-1]
    headline = {
        "prior": config.prior,
        "task": config.task,
        "steps": last["step"],
        "held_out_loss": last["val_loss"],
        "first_held_out_loss": outcome["history"][0]["val_loss"],
        "weights": outcome["weights"],
    }
    report = pfn_report_data(run, config, outcome, headline)
    done = finish_run(
        run, settings, report, metrics={"headline": headline}, files={"pfn.json": outcome}
    )
    return PFNTrainResult(**done.model_dump())
