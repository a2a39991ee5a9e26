"""Ray Train wrapper around the pure fit loop (Train v2 ``TorchTrainer``).

Each worker reads its own shard of the Parquet dataset, trains data-parallel (DDP when
``num_workers > 1``), and rank 0 reports a checkpoint every epoch. Ray keeps the best checkpoints by
validation loss, restarts the worker group from the latest checkpoint when a worker dies
(``FailureConfig``), and the driver copies the best and last checkpoints into the run folder.
A diverging fit is not retried: the workers return it, and the driver raises
:class:`~components.training.fit.DivergedError` once the finite checkpoints are copied.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import ray.train
import ray.train.torch
import torch
from ray.train import (
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
    UserCallback,
)
from ray.train.torch import TorchTrainer
from ray.util.queue import Empty, Queue

from components import atomic
from components.data.staging import is_uri, local_dataset
from components.training.boosted import boosted_fit, check_final_layer
from components.training.checkpoint import (
    CheckpointError,
    ModelSpec,
    load_spec,
    load_state,
    load_weights,
)
from components.training.config import TrainConfig
from components.training.fit import DivergedError, fit
from components.training.self_distill_rounds import Teacher, load_teacher_targets
from components.training.worker_data import worker_batches
from components.training.xnesyl import check_xnesyl, xnesyl_weights

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """What the driver gets back from a finished Ray Train run."""

    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    resumed_at: list[int]
    stopped_early: bool
    attempts: list[dict] = field(default_factory=list)
    self_distill_rounds: list[dict] = field(default_factory=list)  # train.self_distill=iterative
    # rank 0's last ray.train.report and its checkpoint's path (a Tune trial forwards it)
    last_report: dict = field(default_factory=dict)


def check_resume_checkpoint(path: str | Path, spec: ModelSpec) -> None:
    """Fail fast on the driver if ``path`` cannot resume a run of ``spec``: its model, its
    weights (readable, every key and shape of ``spec``'s model) and its training state."""
    found = load_spec(path)
    if (found.name, found.input_shape, found.num_classes) != (
        spec.name,
        spec.input_shape,
        spec.num_classes,
    ):
        raise CheckpointError(
            f"checkpoint {path} holds model {found.name!r} for input {found.input_shape} and "
            f"{found.num_classes} classes; this run needs {spec.name!r} for input "
            f"{spec.input_shape} and {spec.num_classes} classes"
        )
    load_weights(path, spec.build(load_pretrained=False))
    load_state(path)


def train_with_ray(
    *,
    dataset_path: Path | str,
    spec: ModelSpec,
    cfg: TrainConfig,
    run_dir: Path,
    on_epoch: Callable[[dict], None] | None = None,
    storage_path: str | None = None,
    callbacks: list[UserCallback] = (),
    augment: str = "none",
    logger: logging.Logger | logging.LoggerAdapter = log,
    teacher: Teacher | None = None,
    model_setup: Callable[[torch.nn.Module, bool], None] | None = None,
) -> TrainOutcome:
    """Train ``spec`` on the dataset with Ray Train; Ray must already be initialised.

    Args:
        dataset_path: the ingested dataset: a folder every worker can read, or its staged URI
            (:func:`components.data.staging.dataset_for_workers`).
        spec: the model to build on each worker.
        cfg: training configuration.
        run_dir: the run folder; best/last checkpoints are copied to ``run_dir/checkpoints``.
        on_epoch: called on the driver with rank 0's metrics after every epoch (progress bars);
            without it no queue actor is created (a Tune trial's placement group has no room).
        storage_path: where Ray persists checkpoints: a path every node sees, or a URI
            (``s3://...``); defaults to ``run_dir/ray``.
        callbacks: further Ray Train callbacks (a Tune trial passes ``TuneReportCallback``).
        augment: image datasets: the training augmentation the workers apply.
        logger: where every epoch (with ``on_epoch``), a restarted worker group and the outcome
            are told (the train task passes Prefect's run logger).
        teacher: a self-distillation round's frozen teacher and ground-truth weight: each
            worker trains against its mixed targets
            (:mod:`components.training.self_distill_rounds`).
        model_setup: called on each worker with the built model and whether it starts fresh
            (no checkpoint to resume from), before training (a pruning round's start weights
            and fixed masks: :class:`components.pruning.imp_masks.SparseStart`); picklable.
    """
    model = spec.build()  # a bad model config fails here, clearly, not inside every Ray worker
    check_final_layer(spec, cfg)
    if not is_uri(dataset_path):
        check_xnesyl(dataset_path, cfg, model)
    if cfg.resume_from:
        check_resume_checkpoint(cfg.resume_from, spec)
    run_dir = Path(run_dir).resolve()
    dataset = str(dataset_path) if is_uri(dataset_path) else str(Path(dataset_path).resolve())
    queue = _driver_queue() if on_epoch is not None else None
    forward = [_QueueCallback(queue)] if queue is not None else []
    trainer = TorchTrainer(
        train_loop_per_worker=worker_loop,
        train_loop_config={
            "dataset_path": dataset,
            "spec": spec,  # frozen dataclasses: Ray pickles them for every worker
            "train": cfg,
            "marker_dir": str(run_dir),
            "augment": augment,
            "teacher": teacher,
            "model_setup": model_setup,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker},
            placement_strategy=cfg.placement_strategy,
        ),
        run_config=RunConfig(
            name="train",
            storage_path=storage_path or str(run_dir / "ray"),
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.keep_checkpoints,
                checkpoint_score_attribute="checkpoint_score",
                checkpoint_score_order="min",
            ),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            callbacks=[*forward, *callbacks],
            # Ray logs every report and checkpoint at INFO; the driver logs each epoch once.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    if queue is None:
        outcome = _collect(fit_in_thread(trainer), run_dir, [])
    else:
        attempts = AttemptLog(_logging_epochs(on_epoch, logger, cfg.epochs))
        stop = threading.Event()
        pump = threading.Thread(target=_pump, args=(queue, attempts, stop), daemon=True)
        pump.start()
        try:
            result = fit_in_thread(trainer)
        finally:
            stop.set()
            pump.join()
            queue.shutdown()
        outcome = _collect(result, run_dir, attempts.attempts)
    logger.info(
        "best epoch %d (val_loss %.4f%s), %d epochs run%s%s",
        outcome.best_epoch,
        outcome.best_val_loss,
        best_epoch_scope(outcome.history),
        len(outcome.history),
        ", stopped early" if outcome.stopped_early else "",
        _recovery_note(outcome.resumed_at),
    )
    return outcome


def _logging_epochs(
    on_epoch: Callable[[dict], None], logger: logging.Logger | logging.LoggerAdapter, epochs: int
) -> Callable[[dict], None]:
    """``on_epoch`` after telling ``logger`` about the epoch, and first about a worker group
    restarted since the previous one (its metrics carry :class:`AttemptLog`'s fields)."""
    attempt = [1]

    def forward(metrics: dict) -> None:
        if metrics["attempt"] > attempt[0]:
            attempt[0] = metrics["attempt"]
            logger.warning(
                "worker group restarted (attempt %d): recovered from the checkpoint of epoch %d; "
                "workers on nodes %s",
                attempt[0],
                metrics["epoch"] - 1,
                ", ".join(node[:8] for node in metrics["worker_nodes"]),
            )
        accuracy = metrics.get("val_accuracy")
        logger.info(
            "epoch %d/%d [%s] train_loss=%.4f val_loss=%.4f%s (%.0f samples/s per worker)",
            metrics["epoch"],
            metrics.get("epochs_planned", epochs),
            metrics["stage"],
            metrics["train_loss"],
            metrics["val_loss"],
            "" if accuracy is None else f" val_accuracy={accuracy:.4f}",
            metrics["samples_per_s"],
        )
        on_epoch(metrics)

    return forward


def best_epoch_scope(history: list[dict]) -> str:
    """Where the best epoch was chosen, for a model trained in stages: only in the last one
    (ProtoPNet's after its last push, the model its gallery shows); "" for one stage."""
    stages = [row.get("stage") for row in history]
    if len(set(stages)) <= 1:
        return ""
    return f", chosen in the last stage, {stages[-1]}"


def _recovery_note(resumed_at: list[int]) -> str:
    if not resumed_at:
        return ""
    epochs = ", ".join(str(epoch) for epoch in resumed_at)
    return f", resumed from a checkpoint {len(resumed_at)} time(s) (after epoch {epochs})"


def fit_in_thread(trainer: TorchTrainer):
    """``trainer.fit()`` in a helper thread, while the calling thread waits: every Ray Train
    fit of the project runs through here.

    On the main thread, Ray Train installs its own SIGINT handler for the whole process (and
    keeps it after the fit): Ctrl-C then aborts the run, and the command ended as if training
    had succeeded, or as a failure, never as interrupted. From a helper
    thread it installs none, so SIGINT and SIGTERM reach the caller as exceptions and the caller
    decides (the CLI shuts Ray down and marks the run interrupted).
    """
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # handed to the waiting thread
            outcome["error"] = err

    thread = threading.Thread(target=target, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=0.5)  # short waits, so signal handlers run promptly
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class AttemptLog:
    """Tells the worker group's attempts apart in rank 0's per-epoch metrics.

    A restarted group (after a worker or node died) is made of new worker actors; each attempt
    is recorded as ``{"attempt", "first_epoch", "last_epoch", "nodes"}`` (the Ray node id of
    each rank), and every metrics dict passed on carries ``attempt`` and ``worker_nodes``.
    """

    def __init__(self, on_epoch: Callable[[dict], None]) -> None:
        self.on_epoch = on_epoch
        self.attempts: list[dict] = []
        self._workers: list[str] = []

    def __call__(self, metrics: dict) -> None:
        workers, nodes = metrics.pop("worker_ids", []), metrics.pop("worker_nodes", [])
        if not self.attempts or workers != self._workers:
            self._workers = workers
            self.attempts.append(
                {"attempt": len(self.attempts) + 1, "first_epoch": metrics["epoch"]}
            )
        attempt = self.attempts[-1]
        attempt.update(last_epoch=metrics["epoch"], nodes=nodes)
        self.on_epoch({**metrics, "attempt": attempt["attempt"], "worker_nodes": nodes})


def _collect(result, run_dir: Path, attempts: list[dict]) -> TrainOutcome:
    if result.error is not None:
        raise result.error
    diverged = result.return_value  # rank 0's DivergedError arguments (worker_loop)
    if diverged is not None and result.checkpoint is None:
        raise DivergedError(*diverged)
    best_ckpt, _ = min(result.best_checkpoints, key=lambda pair: pair[1]["checkpoint_score"])
    out = run_dir / "checkpoints"
    best = _copy_checkpoint(best_ckpt, out / "best")
    last = _copy_checkpoint(result.checkpoint, out / "last")
    if diverged is not None:
        epoch, stage, losses, lr, _, lr_key = diverged
        raise DivergedError(epoch, stage, losses, lr, f"kept in {last}", lr_key)
    last_report = {**result.metrics, "checkpoint_path": result.checkpoint.path}
    return replace(saved_outcome(best, last, attempts), last_report=last_report)


def saved_outcome(best: Path, last: Path, attempts: list[dict] = ()) -> TrainOutcome:
    """The :class:`TrainOutcome` of a finished run from its copied ``best`` and ``last``
    checkpoints (the history and best epoch are the last checkpoint's fit state)."""
    fit_state = load_state(last)["fit_state"]
    return TrainOutcome(
        best_checkpoint=best,
        last_checkpoint=last,
        history=fit_state["history"],
        best_epoch=fit_state["best_epoch"],
        best_val_loss=fit_state["best_val_loss"],
        resumed_at=fit_state["resumed_at"],
        stopped_early=fit_state["stopped_early"],
        attempts=list(attempts),
    )


def _copy_checkpoint(checkpoint, dest: Path) -> Path:
    """Copy a Ray checkpoint to ``dest``; a copy that fails leaves the previous one intact."""
    with checkpoint.as_directory() as folder:
        return atomic.copy_tree(folder, dest)


def _driver_queue() -> Queue:
    """The progress queue, pinned to the driver's node: it lives as long as the driver does, not
    on a worker node that may be lost mid-training."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    return Queue(actor_options={"num_cpus": 0, "scheduling_strategy": strategy})


def _pump(queue, on_epoch, stop: threading.Event) -> None:
    """Forward rank 0's per-epoch metrics from the controller to the driver's callback."""
    while not (stop.is_set() and queue.empty()):
        try:
            metrics = queue.get(timeout=0.2)
        except Empty:
            continue
        if on_epoch is not None:
            on_epoch(metrics)


class _QueueCallback(UserCallback):
    """Ray Train callback (runs in the controller) that forwards rank 0's metrics to a queue."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint) -> None:
        # A dead queue: the driver stopped listening (an interrupted run), training ends with it.
        with contextlib.suppress(ray.exceptions.RayActorError):
            self.queue.put(
                {
                    **metrics[0],
                    "worker_ids": [rank_metrics.get("worker_id") for rank_metrics in metrics],
                    "worker_nodes": [rank_metrics.get("node_id") for rank_metrics in metrics],
                }
            )


def worker_loop(config: dict) -> list | None:
    """``train_loop_per_worker``: read this rank's shard, resume if possible, run ``fit``.

    Args:
        config: ``dataset_path``, ``spec`` (:class:`ModelSpec`), ``train`` (:class:`TrainConfig`),
            ``marker_dir`` and ``augment``, as :func:`train_with_ray` passes them.

    Returns:
        ``None``, or the arguments of the :class:`DivergedError` that stopped the fit.
    """
    quiet_ray_train_logs()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg, spec = config["train"], config["spec"]
    torch.set_num_threads(cfg.cpus_per_worker)
    device = ray.train.torch.get_device()
    dataset = local_dataset(config["dataset_path"])
    train, val = worker_batches(
        dataset,
        cfg,
        rank,
        world,
        augment=config.get("augment", "none"),
        pin_memory=device.type == "cuda",
    )

    torch.manual_seed(cfg.seed)
    checkpoint = ray.train.get_checkpoint()
    # pretrained trunk weights only for a fresh start: a checkpoint's weights replace them
    model = spec.build(load_pretrained=checkpoint is None and not cfg.resume_from)
    resume = None
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            load_weights(folder, model)
            resume = load_state(folder)
    elif cfg.resume_from:
        load_weights(cfg.resume_from, model)
        resume = load_state(cfg.resume_from)
    if config.get("model_setup") is not None:
        config["model_setup"](model, checkpoint is None and not cfg.resume_from)

    runtime = ray.get_runtime_context()
    placement = {"node_id": runtime.get_node_id(), "worker_id": runtime.get_actor_id()}

    def report(metrics: dict, folder: Path | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(str(folder)) if folder else None
        ray.train.report({**metrics, **placement}, checkpoint=ckpt)

    train_fn = boosted_fit if cfg.final_layer == "boosted" else fit
    try:
        train_fn(
            model,
            train,
            val,
            cfg=cfg,
            spec=spec,
            report=report,
            prepare_model=ray.train.torch.prepare_model,
            device=device,
            resume=resume,
            is_main=rank == 0,
            on_epoch_end=_fault_injector(cfg, rank, Path(config["marker_dir"])),
            **_teacher_targets(config.get("teacher"), device),
            **_sample_weights(dataset, cfg),
        )
    except DivergedError as err:
        # Raising would make Ray restart the group from the last checkpoint, only to diverge
        # again (every epoch is seeded); every rank stops at the same epoch and returns.
        return list(err.args)
    return None


def _teacher_targets(teacher: Teacher | None, device) -> dict:
    """``fit``'s ``targets`` argument in a self-distillation round; nothing otherwise."""
    return {} if teacher is None else {"targets": load_teacher_targets(teacher, device)}


def _sample_weights(dataset: Path, cfg: TrainConfig) -> dict:
    """``fit``'s ``sample_weights`` with ``train.xnesyl.enabled``; nothing otherwise."""
    weights = xnesyl_weights(dataset, cfg)
    return {} if weights is None else {"sample_weights": weights}


def quiet_ray_train_logs() -> None:
    """Raise Ray Train's worker loggers to WARNING.

    Ray logs every report and checkpoint at INFO, partly through loggers named by file path, which
    ``LoggingConfig``'s level filter misses; the driver already logs each epoch once.
    """
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("ray.train") or "/ray/train/" in name:
            logging.getLogger(name).setLevel(logging.WARNING)


def _fault_injector(cfg: TrainConfig, rank: int, marker_dir: Path):
    """Kill rank 0 with SIGKILL once, after epoch ``cfg.kill_worker_at_epoch`` (chaos drills).

    It waits a few controller polls first: a worker that dies within the same poll as its report
    loses that report, and the drill is meant to test recovery from a registered checkpoint.
    """
    if cfg.kill_worker_at_epoch is None or rank != 0:
        return None
    marker = marker_dir / ".worker-killed"

    def maybe_kill(state) -> None:
        if state.epoch == cfg.kill_worker_at_epoch and not marker.exists():
            marker.touch()
            time.sleep(10 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")))
            os.kill(os.getpid(), signal.SIGKILL)

    return maybe_kill
