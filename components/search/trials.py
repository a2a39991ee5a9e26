"""The Ray Tune trainables behind every search method.

Each function trains one trial and reports per-epoch metrics to Tune:

* :func:`fit_trial`: the pipeline's fit loop in the trial's own process (``train.num_workers=1``),
  reading the data as one Ray Train worker does (an image dataset is decoded and augmented by
  ``train.decode_workers`` loader processes), on CUDA when the trial was given a GPU or a share
  of one (``search.resources_per_trial``), after pre-training its encoder when the sweep has an
  ``ssl`` group (:mod:`components.search.trial_ssl`); every epoch's checkpoint goes to Tune, so ASHA
  can stop it, PBT can clone it (a trial records whose weights it took) and the best trial can
  be reloaded. Tune reuses a finished trial's process for the next one, which then finds the
  splits already in memory (:mod:`components.training.worker_data`);
* :func:`ray_train_trial`: for ``train.num_workers > 1``, a driver that builds a Ray Train
  ``TorchTrainer`` (Train v2) and forwards its reports through Ray's ``TuneReportCallback``,
  the final epoch's once the trainer has returned;
* :func:`stn_trial`: one Self-Tuning Network run; the hyperparameter schedule is reported every
  epoch and saved with the final checkpoint (``schedule.json``);
* :func:`darts_trial` / :func:`random_ws_trial`: one (SD-)DARTS or weight-sharing random search;
  the genotype (and DARTS' architecture weights) are saved with the final checkpoint;
* :func:`enas_trial`: one ENAS search (``search.enas``), ranked and saved as random_ws's;
* :func:`bossnas_trial`: one BossNAS search (block-wise self-supervised, no labels); the
  searched architecture and every block's path ratings are saved as ``genotype.json``.

DARTS and random_ws take the train and val splits as in-memory arrays, so they refuse image
datasets (:func:`components.search.tune_sweep.check_data` says so before a sweep starts); an STN
of the configured model reads batches as :func:`fit_trial` does.

Every trainable takes Tune's sampled ``config`` and the sweep's constant ``base``: the dataset,
the :class:`~components.training.checkpoint.ModelSpec` and
:class:`~components.training.config.TrainConfig` objects built once on the driver (``spec``,
``train``, which a trial's ``model.*`` / ``train.*`` values override), the STN and DARTS
settings, the augmentation and the ``ssl`` group's :class:`~components.ssl.config.SSLConfig`
(None: no pre-training; a trial's ``ssl.*`` values override it).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from safetensors.torch import save_file

from components.data.errors import DataError
from components.data.reader import load_meta, read_split
from components.data.staging import local_dataset
from components.search import storage
from components.search.bossnas import bossnas_config, search_bossnas
from components.search.darts import DartsConfig, search_darts, search_random_ws
from components.search.enas import EnasConfig, search_enas
from components.search.space import (
    apply_model_overrides,
    apply_train_overrides,
    group_overrides,
)
from components.search.stn import STNConfig, train_stn
from components.search.stn_pipeline import train_stn_model
from components.search.trial_metrics import extra_metrics
from components.search.trial_ssl import pretrain_trial_encoder
from components.training.checkpoint import load_state, load_weights
from components.training.fit import fit
from components.training.ray_trainer import quiet_ray_train_logs
from components.training.worker_data import worker_batches

TRIAL_FILE = "trial.json"
SCHEDULE_FILE = "schedule.json"
GENOTYPE_FILE = "genotype.json"
ALPHAS_FILE = "alphas.json"


def fit_trial(config: dict, base: dict) -> None:
    """One trial of the pipeline's model, trained by :func:`components.training.fit.fit`."""
    quiet_ray_train_logs()  # Ray logs every checkpoint; the sweep logs each finished trial
    cfg = apply_train_overrides(base["train"], config)
    spec = apply_model_overrides(base["spec"], config)
    torch.set_num_threads(cfg.cpus_per_worker)
    device = torch.device(base.get("device", "cpu"))  # cuda: the trial holds (a share of) a GPU
    dataset = local_dataset(base["dataset_path"])
    # Read once per worker process: a reused actor takes the splits from memory.
    train, val = worker_batches(
        dataset, cfg, augment=base["augment"], pin_memory=device.type == "cuda"
    )
    ssl = base.get("ssl") if tune.get_checkpoint() is None else None  # restored: weights given
    if ssl is not None:
        folder = Path(tune.get_context().get_trial_dir()) / "ssl"
        spec, ssl_metrics = pretrain_trial_encoder(ssl, config, spec, dataset, folder)
    else:
        ssl_metrics = {}
    torch.manual_seed(cfg.seed)
    model = spec.build()
    trial_id = tune.get_context().get_trial_id()
    resume, exploited_from = _restore(model, trial_id)
    model.to(device)

    def report(metrics: dict, folder: Path | None) -> None:
        extra = extra_metrics(base.get("metrics", ()), model, val, dataset)  # search.metric
        metrics = {**metrics, **extra, **ssl_metrics, "exploited_from": exploited_from}
        (folder / TRIAL_FILE).write_text(json.dumps({"trial_id": trial_id}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))

    fit(
        model,
        train,
        val,
        cfg=cfg,
        spec=spec,
        report=report,
        device=device,
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
    with storage.checkpoint_folder(checkpoint) as folder:
        load_weights(folder, model)
        state = load_state(folder)
        donor = json.loads((Path(folder) / TRIAL_FILE).read_text())["trial_id"]
    if donor == trial_id:
        return state, ""
    return {"fit_state": state["fit_state"]}, donor


def ray_train_trial(config: dict, base: dict) -> None:
    """One trial trained data-parallel by a Ray Train ``TorchTrainer`` (Train v2).

    The trainer's rank-0 reports reach Tune through ``TuneReportCallback`` (with the path of
    each checkpoint), the final epoch's only once the trainer has returned
    (:class:`_HoldFinalEpoch`); Ray Train keeps the checkpoints under ``<trial dir>/ray/train``.
    """
    from components.training.ray_trainer import train_with_ray

    quiet_ray_train_logs()
    cfg = apply_train_overrides(base["train"], config)
    # The trial's folder in the experiment's storage (a shared filesystem on a cluster);
    # get_trial_dir() is a node-local staging folder.
    trial_dir = Path(tune.get_context().get_storage().trial_fs_path)
    outcome = train_with_ray(
        dataset_path=base["dataset_path"],
        spec=apply_model_overrides(base["spec"], config),
        cfg=cfg,
        run_dir=trial_dir,
        storage_path=str(trial_dir / "ray"),
        callbacks=[_HoldFinalEpoch(cfg.epochs)],
        augment=base["augment"],
    )
    if _is_final(outcome.last_report, cfg.epochs):
        tune.report(outcome.last_report)


def _is_final(metrics: dict, epochs: int) -> bool:
    """Whether a Ray Train report (epochs counted from 1) is the run's final epoch's."""
    return metrics.get("epoch") == metrics.get("epochs_planned", epochs)


class _HoldFinalEpoch(TuneReportCallback):
    """``TuneReportCallback`` without the final epoch's report, which :func:`ray_train_trial`
    sends once the trainer has returned.

    Tune stops a trial on its final report (ASHA's ``max_t``), and the trial's process ends
    with the actors it owns: a trainer still shutting down died with it, leaving its placement
    group to Ray Train's detached cleaner. On a loaded machine that cleaner sometimes never
    freed it, and the next trial waited for CPUs forever. A trainer that has returned has
    released its workers itself.
    """

    def __init__(self, epochs: int):
        super().__init__()
        self._epochs = epochs

    def after_report(self, run_context, metrics, checkpoint):
        if not _is_final(metrics[0], self._epochs):
            super().after_report(run_context, metrics, checkpoint)


def _report_epochs(epochs: int) -> tuple[Callable[[dict], None], list[dict]]:
    """A per-epoch callback reporting to Tune, holding back the last epoch (it is reported
    with the checkpoint once the run has finished)."""
    held: list[dict] = []

    def report(row: dict) -> None:
        row = {k: v for k, v in row.items() if isinstance(v, int | float)}
        if "val_acc" in row:
            row["val_accuracy"] = row.pop("val_acc")
        if int(row.get("epoch", -1)) == epochs - 1:
            held.append(row)
        else:
            tune.report(row)

    return report, held


def _report_final(row: dict, files: dict[str, object], tensors: dict | None = None) -> None:
    quiet_ray_train_logs()
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            (Path(folder) / name).write_text(json.dumps(content, indent=1))
        if tensors:
            save_file(tensors, str(Path(folder) / "model.safetensors"))
        tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))


def _splits(dataset_path: str):
    dataset_path = local_dataset(dataset_path)
    if load_meta(dataset_path).is_image:  # the sweep refuses this before it starts
        raise DataError(
            "STN, DARTS and random_ws trials cannot decode an image dataset",
            file=str(dataset_path),
        )
    x, y = read_split(dataset_path, "train")
    vx, vy = read_split(dataset_path, "val")
    return x, y, vx, vy, load_meta(dataset_path).num_classes


def stn_trial(config: dict, base: dict) -> None:
    """One Self-Tuning Network run from the trial's starting hyperparameters: the STN MLP on
    in-memory arrays, or the best-response copy of the configured model reading batches through
    the pipeline's loaders (image folders included), as ``stn.network`` resolves."""
    stn = STNConfig(**{**_tupled(base["stn"]), **group_overrides(config, "stn")})
    torch.set_num_threads(1)
    report, held = _report_epochs(stn.epochs)
    dataset = local_dataset(base["dataset_path"])
    if stn.resolved_network(base["spec"].name, load_meta(dataset).is_image) == "model":
        result = _stn_of_model(stn, base, dataset, report)
    else:
        x, y, vx, vy, num_classes = _splits(base["dataset_path"])
        result = train_stn(x, y, vx, vy, num_classes=num_classes, config=stn, report=report)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    state |= {f"hyper.{k}": v.contiguous() for k, v in result.hyper.state_dict().items()}
    files = {SCHEDULE_FILE: result.schedule, "stn_config.json": asdict(stn)}
    _report_final(held[-1], files, state)


def _stn_of_model(stn: STNConfig, base: dict, dataset, report):
    """The configured model's STN on the loaders' batches; the loaders do no augmentation of
    their own (the STN tunes it)."""
    spec = base["spec"]
    cfg = replace(base["train"], batch_size=stn.batch_size, seed=stn.seed)
    train, val = worker_batches(dataset, cfg, augment="none")
    torch.manual_seed(stn.seed)
    return train_stn_model(
        spec.build(),
        train,
        val,
        input_shape=tuple(spec.input_shape),
        settings=stn.pipeline_settings(),
        report=report,
    )


def darts_trial(config: dict, base: dict) -> None:
    """One (SD-)DARTS search; the final report carries the discretised genotype."""
    darts, _ = _darts_config(config, base)
    torch.set_num_threads(1)
    x, y, vx, vy, num_classes = _splits(base["dataset_path"])
    report, held = _report_epochs(darts.epochs)
    result = search_darts(x, y, vx, vy, num_classes=num_classes, config=darts, report=report)
    files = {GENOTYPE_FILE: result.genotype.to_dict(), ALPHAS_FILE: result.alphas}
    _report_final(held[-1], files)


def random_ws_trial(config: dict, base: dict) -> None:
    """One random search with weight sharing; the final report carries the best candidate."""
    darts, candidates = _darts_config(config, base)
    torch.set_num_threads(1)
    x, y, vx, vy, num_classes = _splits(base["dataset_path"])
    report, held = _report_epochs(darts.epochs)
    result = search_random_ws(
        x,
        y,
        vx,
        vy,
        num_classes=num_classes,
        config=darts,
        num_candidates=candidates,
        report=report,
    )
    ranking = result.history[-1]
    row = {
        **held[-1],
        "val_loss": ranking["best_val_loss"],
        "worst_val_loss": ranking["worst_val_loss"],
        "candidates": ranking["candidates"],
    }
    _report_final(row, {GENOTYPE_FILE: result.genotype.to_dict()})


def enas_trial(config: dict, base: dict) -> None:
    """One ENAS search (supernet from ``search.darts``, controller from ``search.enas``); the
    final report carries the best of the trained controller's samples and the correlation of
    its hidden states with graph distance."""
    darts, candidates = _darts_config(config, base)
    enas = EnasConfig(**{**base["enas"], **group_overrides(config, "enas")})
    torch.set_num_threads(1)
    x, y, vx, vy, num_classes = _splits(base["dataset_path"])
    report, held = _report_epochs(darts.epochs)
    result = search_enas(
        x,
        y,
        vx,
        vy,
        num_classes=num_classes,
        config=darts,
        enas=enas,
        num_candidates=candidates,
        report=report,
    )
    ranking = result.history[-1]
    row = {**held[-1], "val_loss": ranking["best_val_loss"]}
    row |= {k: ranking[k] for k in ranking if not k.startswith("best_")}
    row["val_accuracy"] = ranking["best_val_accuracy"]  # of the kept candidate
    _report_final(row, {GENOTYPE_FILE: result.genotype.to_dict()})


def bossnas_trial(config: dict, base: dict) -> None:
    """One BossNAS search; each epoch reports the ensemble-bootstrapping loss of the block's
    best-rated path (``val_loss``) and a k-NN probe of its features (``val_accuracy``); the
    final report carries the searched architecture."""
    bossnas = bossnas_config({**base["bossnas"], **group_overrides(config, "bossnas")})
    torch.set_num_threads(1)
    x, y, vx, vy, _ = _splits(base["dataset_path"])
    report, held = _report_epochs(bossnas.total_epochs)
    result = search_bossnas(x, vx, config=bossnas, labels=(y, vy), report=report)
    _report_final(held[-1], {GENOTYPE_FILE: result.to_dict()})


def _darts_config(config: dict, base: dict) -> tuple[DartsConfig, int]:
    """The trial's :class:`DartsConfig` and random search's number of ranked candidates."""
    settings = {**base["darts"], **group_overrides(config, "darts")}
    candidates = int(settings.pop("num_candidates", 100))
    return DartsConfig(**settings), candidates


def _tupled(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
