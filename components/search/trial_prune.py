"""A sweep trial of lottery-ticket rounds (``sennflow sweep prune=default``).

Each trial runs :func:`components.pruning.lottery.run_lottery` in its own process with the
sweep's ``prune`` group and its sampled ``prune.*`` (and ``train.*`` / ``model.*``) values: the
dense round, then ``prune.rounds`` rounds of pruning, rewinding and retraining, each round one
:func:`components.training.fit.fit` on the batches a single Ray Train worker reads
(:func:`components.pruning.round_trainers.batch_rounds`). No re-initialised controls are
trained (they are a comparison, not a result a trial is ranked by); the retrain of the best
trial runs them when ``prune.control`` says so.

Every pruning round is one report to Tune (the dense round is not: it is the same network for
every pruning rate, so ASHA's first rung would compare equals): the ticket's best validation
loss and accuracy, ``remaining`` (the share of prunable weights it keeps), ``prune_round`` and
any extra metric the sweep ranks by, computed on the ticket. The checkpoint of each report is the
trial's whole lottery folder (masks and weights of every round, ``state.json``), so a trial that
Tune restores (a resumed sweep, a HyperBand pause) continues at its next unfinished round.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from ray import tune

from components import atomic
from components.data.staging import local_dataset
from components.pruning.lottery import LotteryStore, run_lottery
from components.pruning.round_trainers import batch_rounds
from components.search import storage
from components.search.space import (
    apply_model_overrides,
    apply_prune_overrides,
    apply_train_overrides,
)
from components.search.trial_metrics import extra_metrics, extra_names
from components.training.ray_trainer import quiet_ray_train_logs
from components.training.worker_data import worker_batches


def prune_trial(config: dict, base: dict) -> None:
    """One trial: lottery rounds at the trial's values, one Tune report per pruning round."""
    quiet_ray_train_logs()
    cfg = apply_train_overrides(base["train"], config)
    spec = apply_model_overrides(base["spec"], config)
    prune = replace(apply_prune_overrides(base["prune"], config), control=False)
    torch.set_num_threads(cfg.cpus_per_worker)
    device = torch.device(base.get("device", "cpu"))
    dataset = local_dataset(base["dataset_path"])
    train, val = worker_batches(
        dataset, cfg, augment=base["augment"], pin_memory=device.type == "cuda"
    )
    store = LotteryStore(Path(tune.get_context().get_trial_dir()) / "lottery")
    if (checkpoint := tune.get_checkpoint()) is not None:
        with storage.checkpoint_folder(checkpoint) as folder:
            atomic.copy_tree(folder, store.folder)

    def report(record: dict) -> None:
        if record["round"] == 0:
            return
        ticket = record["ticket"]
        metrics = {
            "val_loss": ticket["val_loss"],
            "val_accuracy": ticket["val_accuracy"],
            "remaining": record["remaining"],
            "prune_round": record["round"],
        }
        if extra_names(names := base.get("metrics", ())):
            model = spec.build(load_pretrained=False)
            model.load_state_dict(store.load_weights(f"round-{record['round']}/ticket"))
            metrics |= extra_metrics(names, model.to(device), val, dataset)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(store.folder)))

    train_round = batch_rounds(spec, cfg, train, val, device=device)
    run_lottery(spec, prune, train_round, store, on_round=report)
