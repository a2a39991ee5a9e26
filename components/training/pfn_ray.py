"""Fitting a PFN on its prior through Ray Train (``sennflow pfn-train``): the workers run
:func:`components.pfn.train.train_pfn`, each drawing its own tasks (data parallel, DDP with
``num_workers > 1``). Every ``checkpoint_every`` steps rank 0 attaches a checkpoint (the
weights file and the resumable training state, ``torch.load(weights_only=True)``-readable);
a worker that fails restarts from the newest one (``pfn.max_failures``). The driver copies the
last checkpoint's weights to ``<run>/checkpoints/pfn.safetensors``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ray.train
import ray.train.torch
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from components import atomic
from components.pfn.config import PFNTrainConfig
from components.pfn.train import build_network, train_pfn
from components.pfn.weights import FILE, save_pfn_weights
from components.training.ray_trainer import fit_in_thread, quiet_ray_train_logs

STATE = "state.pt"
HISTORY = "history.json"


@dataclass(frozen=True)
class PFNOutcome:
    """Where the fitted weights are, and the reported rows (step, losses, seconds)."""

    weights: Path
    history: list[dict]


def pfn_train_with_ray(
    cfg: PFNTrainConfig, run_dir: Path, storage_path: str | None = None
) -> PFNOutcome:
    """Fit a PFN on ``cfg``'s prior with Ray Train (Ray must be up)."""
    run_dir = Path(run_dir).resolve()
    trainer = TorchTrainer(
        train_loop_per_worker=pfn_worker_loop,
        train_loop_config={"pfn": cfg},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=False),
        run_config=RunConfig(
            name="pfn-train",
            storage_path=storage_path or str(run_dir / "ray"),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
        ),
    )
    result = fit_in_thread(trainer)
    if result.checkpoint is None:
        raise RuntimeError(f"PFN training returned no checkpoint: {result.error}")
    folder = run_dir / "checkpoints"
    with result.checkpoint.as_directory() as saved:
        atomic.copy_tree(saved, folder / "last")
    weights = folder / FILE
    atomic.write_bytes(weights, (folder / "last" / FILE).read_bytes())
    history = json.loads((folder / "last" / HISTORY).read_text())
    return PFNOutcome(weights=weights, history=history)


def pfn_worker_loop(config: dict) -> None:
    """``train_loop_per_worker``: restore the newest checkpoint if any, then train."""
    quiet_ray_train_logs()
    torch.set_num_threads(1)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg: PFNTrainConfig = config["pfn"]
    net = build_network(cfg)
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(Path(folder) / STATE, map_location="cpu", weights_only=True)
        net.load_state_dict(resume["net"])
    module = ray.train.torch.prepare_model(net) if world > 1 else net

    def report(row: dict, state: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:
                save_pfn_weights(
                    Path(tmp) / FILE,
                    net,
                    prior=cfg.prior,
                    task=cfg.task,
                    architecture=cfg.architecture(),
                    borders=state["borders"],
                )
                torch.save(state, Path(tmp) / STATE)
                (Path(tmp) / HISTORY).write_text(json.dumps(state["history"], indent=1))
                saved = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(row, checkpoint=saved)

    train_pfn(net, cfg, report=report, resume=resume, train_module=module, rank=rank)
