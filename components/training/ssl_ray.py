"""Self-supervised pre-training through Ray Train: the workers run
:func:`components.ssl.learner.train_ssl` on their shard of the training split (no labels).

Each worker reports every epoch's SSL metrics; at the last epoch rank 0 attaches the SSL
checkpoint folder (:mod:`components.ssl.checkpoint`, plus ``history.json``), which the driver
copies to ``<run>/checkpoints/best``. With ``num_workers > 1`` the learner is wrapped by
``prepare_model`` (DDP): gradients are averaged, but Barlow Twins' cross-correlation and
DirectPred's correlation are per-worker statistics (the reference gathers them across GPUs;
we do not, so a worker's batch is its own ``batch_size``). Every rank pads its shard to the
largest shard's row count by repeating its own rows (:func:`equal_shard`, the supervised
``ShardBatches`` rule), so all ranks take the same number of steps per epoch: a rank with one
batch more would wait forever in DDP's gradient all-reduce.

A diverging run (a NaN or infinite epoch loss, embedding or projection) raises the supervised
fit's :class:`~components.training.fit.DivergedError` (stage ``ssl``, naming ``ssl.lr``) on
the driver, as :mod:`components.training.ray_trainer` does: every rank stops at that epoch, rank
0 saves the learner as it was after the last finite epoch, and the driver copies that to
``<run>/checkpoints/last`` (no ``best``: the run did not finish).
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray.train
import ray.train.torch
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from components import atomic
from components.data.reader import load_meta, read_split
from components.data.staging import is_uri, local_dataset
from components.ssl.config import SSLConfig
from components.ssl.learner import (
    DIVERGENCE_KEYS,
    build_learner,
    cross_correlation_block,
    model_spec_dict,
    save_checkpoint,
    train_ssl,
)
from components.training.batches import epoch_order
from components.training.fit import DivergedError, check_finite
from components.training.ray_trainer import fit_in_thread, quiet_ray_train_logs

HISTORY = "history.json"
CROSS_CORRELATION = "cross_correlation.json"
SSL_STAGE = "ssl"  # the stage a diverged pre-training names


@dataclass(frozen=True)
class PretrainOutcome:
    """Where the encoder was saved, the per-epoch SSL metrics (epoch 0: untrained) and the final
    projections' cross-correlation (its top-left 64x64 block)."""

    checkpoint: Path
    history: list[dict]
    cross_correlation: list[list[float]]


@dataclass(frozen=True)
class SourceModel:
    """The registered model whose encoder is pre-trained, as the supervised run will build it."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    tiny: bool = False
    params: dict | None = None

    def learner(self, cfg: SSLConfig):
        """``(model, learner)``: this model and its encoder's SSL learner under ``cfg``
        (:func:`components.ssl.learner.build_learner`)."""
        return build_learner(
            self.name,
            self.input_shape,
            cfg,
            num_classes=self.num_classes,
            tiny=self.tiny,
            model_params=self.params,
        )


def pretrain_with_ray(
    *,
    dataset_path: Path | str,
    source: SourceModel,
    cfg: SSLConfig,
    run_dir: Path,
    storage_path: str | None = None,
) -> PretrainOutcome:
    """Pre-train ``source``'s encoder on the training split with Ray Train (Ray must be up)."""
    run_dir = Path(run_dir).resolve()
    source.learner(cfg)  # fails here, not in a worker
    if not is_uri(dataset_path):
        check_workers(load_meta(dataset_path).row_counts["train"], cfg.num_workers)
    dataset = str(dataset_path) if is_uri(dataset_path) else str(Path(dataset_path).resolve())
    trainer = TorchTrainer(
        train_loop_per_worker=ssl_worker_loop,
        train_loop_config={"dataset_path": dataset, "source": source, "ssl": cfg},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=False),
        run_config=RunConfig(
            name="pretrain",
            storage_path=storage_path or str(run_dir / "ray"),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    result = fit_in_thread(trainer)
    if result.return_value is not None:  # rank 0's DivergedError arguments (ssl_worker_loop)
        raise _diverged(result.return_value, result.checkpoint, run_dir)
    if result.checkpoint is None:
        raise RuntimeError(f"SSL pre-training returned no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as folder:
        best = atomic.copy_tree(folder, run_dir / "checkpoints" / "best")
    history = json.loads((best / HISTORY).read_text())
    matrix = json.loads((best / CROSS_CORRELATION).read_text())
    return PretrainOutcome(checkpoint=best, history=history, cross_correlation=matrix)


def _diverged(args: list, checkpoint, run_dir: Path) -> DivergedError:
    """The :class:`DivergedError` of a worker's ``args``, naming where the last finite epoch's
    encoder was copied (``<run>/checkpoints/last``) when one was saved."""
    if checkpoint is None:
        return DivergedError(*args)
    with checkpoint.as_directory() as folder:
        last = atomic.copy_tree(folder, run_dir / "checkpoints" / "last")
    epoch, stage, losses, lr, _, lr_key = args
    return DivergedError(epoch, stage, losses, lr, f"kept in {last}", lr_key)


def divergence_check(cfg: SSLConfig) -> Callable[[dict], None]:
    """``train_ssl``'s check: :class:`DivergedError` (stage ``ssl``, naming ``ssl.lr``) once any
    rank's epoch metrics :data:`~components.ssl.learner.DIVERGENCE_KEYS` are not finite."""

    def check(metrics: dict) -> None:
        losses = {key: metrics[key] for key in DIVERGENCE_KEYS}
        check_finite(losses, metrics["epoch"], SSL_STAGE, cfg.lr, lr_key="ssl.lr")

    return check


def check_workers(total_rows: int, world: int) -> None:
    """Raise ``ValueError`` naming ``ssl.num_workers`` when ``world`` workers would leave one
    fewer than 2 rows of a ``total_rows``-row training split (padded, :func:`equal_shard`): the
    projector's BatchNorm cannot train on a batch of one row."""
    if math.ceil(total_rows / world) < 2:
        raise ValueError(
            f"ssl.num_workers={world} leaves a worker fewer than 2 rows of the {total_rows}-row "
            "training split (the projector's BatchNorm needs 2 per batch); use fewer workers"
        )


def equal_shard(x: torch.Tensor, total_rows: int, world: int) -> torch.Tensor:
    """This rank's rows ``x`` padded to the largest shard's count, ``ceil(total_rows / world)``,
    by repeating its own rows in order (:func:`~components.training.batches.epoch_order`, as
    the supervised ``ShardBatches`` pads every rank), so every data-parallel rank runs the same
    number of SSL steps per epoch. :func:`~components.data.reader.read_split` deals row ``i`` to
    shard ``i % world``, so a shard is short by at most one row.

    Raises:
        ValueError: when a shard would hold fewer than 2 rows (:func:`check_workers`).
    """
    check_workers(total_rows, world)
    return x[epoch_order(len(x), math.ceil(total_rows / world), shuffle=False, seed=0)]


def ssl_worker_loop(config: dict) -> list | None:
    """``train_loop_per_worker``: this rank's shard of the training inputs through ``train_ssl``.

    Returns:
        ``None``, or the arguments of the :class:`DivergedError` that stopped pre-training.
    """
    quiet_ray_train_logs()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    source, cfg = config["source"], config["ssl"]
    torch.set_num_threads(1)
    dataset = local_dataset(config["dataset_path"])
    # the labels are read and never used
    x, _ = read_split(dataset, "train", shard_index=rank, num_shards=world)
    model, net = source.learner(cfg)
    x = equal_shard(torch.as_tensor(x), load_meta(dataset).row_counts["train"], world)
    module = ray.train.torch.prepare_model(net) if world > 1 else net

    def report(metrics: dict, save: bool) -> None:
        if not save:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                spec = model_spec_dict(
                    source.name,
                    source.input_shape,
                    source.num_classes,
                    source.tiny,
                    source.params or {},
                )
                save_checkpoint(Path(tmp), model, spec, cfg, metrics["epoch"])
                (Path(tmp) / HISTORY).write_text(json.dumps(history, indent=1))
                block = cross_correlation_block(net, x, cfg)
                (Path(tmp) / CROSS_CORRELATION).write_text(json.dumps(block))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)

    history: list[dict] = []
    finite: dict = {}  # rank 0: the learner's state after the last finite epoch

    def on_epoch(metrics: dict) -> None:
        history.append(metrics)
        if 0 < metrics["epoch"] < cfg.epochs and rank == 0:
            finite["state"] = copy.deepcopy(net.state_dict())
        if metrics["epoch"] > 0:
            report(metrics, save=metrics["epoch"] == cfg.epochs)

    check = divergence_check(cfg)
    try:
        train_ssl(net, x, cfg, on_epoch=on_epoch, train_module=module, check=check)
    except DivergedError as err:
        # Raising would fail the worker group with a long traceback; every rank stops at the
        # same epoch (the flag is all-reduced) and rank 0 saves the last finite epoch, if any.
        if len(history) > 1:
            if rank == 0:
                net.load_state_dict(finite["state"])
            report(history[-1], save=True)
        return list(err.args)
    return None
