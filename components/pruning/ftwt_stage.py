"""The FTWT stage: train a trained model's mask predictors, then measure what gating costs.

Runs after ordinary training (``train.dynamic_pruning=ftwt``), in one process (predictors are a
linear layer per conv layer: seconds on a CPU). The order follows the reference's schedule in two
phases instead of its one joint run from a trained baseline: first the predictors alone learn
their BCE targets while the backbone is frozen (decoupled: their input is detached, so the task
loss never sees the predictor loss), gating with their own predictions as the reference does in
training; then, optionally, the backbone is fine-tuned on its task loss under the predicted masks
with the predictors frozen (the reference's cool-down, where the mask loss weight drops to 0).
:mod:`components.pruning.ftwt` holds the gating, the targets and the FLOPs counts.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from components.pruning.ftwt import FtwtGates
from components.training.batches import ShardBatches
from components.training.checkpoint import ModelSpec, save_checkpoint
from components.training.ftwt_config import FtwtConfig

PREDICTORS = "ftwt_predictors.safetensors"


def run_ftwt(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    cfg: FtwtConfig,
    *,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[dict, FtwtGates]:
    """Train FTWT predictors for ``model`` and report FLOPs and accuracy with/without gating.

    Args:
        model: the trained model; fine-tuned in place when ``cfg.finetune_epochs > 0``.
        train: inputs and labels the predictors (and fine-tuning) learn from; the FLOPs
            estimate before training is taken on them.
        test: inputs and labels the accuracies and the measured FLOPs are taken on.
        cfg: the stage's settings.
        batch_size: rows per step.
        seed: seeds the predictors' initialisation and the shuffling.

    Returns:
        The report section (see :mod:`components.report.ftwt_section`) and the attached gates.
    """
    torch.manual_seed(seed)
    gates = FtwtGates(model, cfg.mass).attach()
    dense = evaluate_gating(model, gates, *test, mode="off", batch_size=batch_size)
    estimate = evaluate_gating(model, gates, *train, mode="ground_truth", batch_size=batch_size)
    batches = ShardBatches(*train, batch_size=batch_size, shuffle=True, seed=seed)
    history = fit_predictors(model, gates, batches, cfg)
    before = evaluate_gating(model, gates, *test, mode="predicted", batch_size=batch_size)
    history += finetune(model, gates, batches, cfg)
    gated = evaluate_gating(model, gates, *test, mode="predicted", batch_size=batch_size)
    dense_macs = dense["dense_macs"]
    measured = gated["macs_mean"] + gates.predictor_macs
    section = {
        "mass": cfg.mass,
        "epochs": cfg.epochs,
        "finetune_epochs": cfg.finetune_epochs,
        "layers": _layer_rows(gates, estimate, gated),
        "macs": {
            "dense": dense_macs,
            "predicted": estimate["macs_mean"],
            "measured": measured,
            "predictor": gates.predictor_macs,
        },
        "reduction": {
            "predicted": 1 - estimate["macs_mean"] / dense_macs,
            "measured": 1 - measured / dense_macs,
        },
        "accuracy": {
            "dense": dense["accuracy"],
            "gated_before_finetune": before["accuracy"],
            "gated": gated["accuracy"],
        },
        "measured_macs_per_input": gated["macs"],
        "history": history,
    }
    return section, gates


def fit_predictors(model, gates: FtwtGates, batches: ShardBatches, cfg: FtwtConfig) -> list[dict]:
    """Train the predictors on their BCE targets with the backbone frozen; one row per epoch."""
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    model.eval()  # frozen backbone: no dropout noise in the targets
    gates.mode = "predicted"
    opt = torch.optim.SGD(gates.predictors.parameters(), lr=cfg.lr, momentum=0.9)
    history = []
    try:
        for epoch in range(cfg.epochs):
            batches.set_epoch(epoch)
            total, rows = 0.0, 0
            for x, _ in batches:
                model(x)
                loss = gates.mask_loss()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, rows = total + loss.item() * len(x), rows + len(x)
            history.append({"phase": "predictors", "epoch": epoch + 1, "loss": total / rows})
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return history


def finetune(model, gates: FtwtGates, batches: ShardBatches, cfg: FtwtConfig) -> list[dict]:
    """Fine-tune the backbone on its task loss under the predicted masks (predictors frozen)."""
    if cfg.finetune_epochs == 0:
        return []
    gates.mode = "predicted"
    gates.predictors.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.finetune_lr)
    model.train()
    history = []
    for epoch in range(cfg.finetune_epochs):
        batches.set_epoch(cfg.epochs + epoch)
        total, rows = 0.0, 0
        for x, y in batches:
            loss = model.loss(model(x), x, y)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, rows = total + loss.item() * len(x), rows + len(x)
        history.append({"phase": "finetune", "epoch": epoch + 1, "loss": total / rows})
    gates.predictors.requires_grad_(True)
    model.eval()
    return history


@torch.no_grad()
def evaluate_gating(model, gates: FtwtGates, x, y, *, mode: str, batch_size: int = 256) -> dict:
    """Accuracy, per-input conv MACs and per-layer mask statistics under gating ``mode``.

    Returns:
        ``accuracy``; ``macs`` (per input) and ``macs_mean``; ``dense_macs``; per layer
        ``kept`` (mean fraction of filters gated on), ``target_kept`` (of the top-k targets),
        ``mask_accuracy`` (predictions vs targets, per filter and input) and
        ``static_accuracy`` (the best input-independent mask: each filter's majority target).
    """
    model.eval()
    gates.mode = mode
    correct, macs, sums = 0, [], None
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        correct += int((model(xb).logits.argmax(dim=1) == yb).sum())
        record = gates.record
        macs.append(gates.macs_per_input(record))
        batch = [_filter_sums(*parts) for parts in zip(*_record_parts(record), strict=True)]
        sums = batch if sums is None else _added(sums, batch)
    n, all_macs = len(x), torch.cat(macs)
    kept, target_kept, hits = ([part / n for part in layer] for layer in zip(*sums, strict=True))
    return {
        "accuracy": correct / n,
        "macs": all_macs.tolist(),
        "macs_mean": float(all_macs.mean()),
        "dense_macs": gates.dense_macs(record),
        "kept": [float(k.mean()) for k in kept],
        "target_kept": [float(t.mean()) for t in target_kept],
        "mask_accuracy": [float(h.mean()) for h in hits],
        "static_accuracy": [float(torch.maximum(t, 1 - t).mean()) for t in target_kept],
    }


def _added(sums: list[list[torch.Tensor]], batch: list[list[torch.Tensor]]) -> list:
    return [[a + b for a, b in zip(s, t, strict=True)] for s, t in zip(sums, batch, strict=True)]


def _record_parts(record):
    return record.masks, record.targets, record.logits


def _filter_sums(mask, target, logits) -> list[torch.Tensor]:
    """Per filter, over a batch: inputs gated on, inputs in the top-k, correct predictions."""
    predicted = (logits > 0).to(target.dtype)
    return [mask.sum(0), target.sum(0), (predicted == target).to(target.dtype).sum(0)]


def _layer_rows(gates: FtwtGates, estimate: dict, gated: dict) -> list[dict]:
    return [
        {
            "layer": name,
            "filters": layer.conv.out_channels,
            "kept_predicted": estimate["target_kept"][i],
            "kept_measured": gated["kept"][i],
            "mask_accuracy": gated["mask_accuracy"][i],
            "static_accuracy": gated["static_accuracy"][i],
        }
        for i, (name, layer) in enumerate(zip(gates.layer_names(), gates.layers, strict=True))
    ]


def save_ftwt(folder: Path, model, gates: FtwtGates, spec: ModelSpec) -> Path:
    """The (fine-tuned) model as a checkpoint folder, with the predictors' weights beside it."""
    save_checkpoint(folder, model, spec, {"ftwt_mass": gates.mass})
    weights = {k: v.detach().cpu().contiguous() for k, v in gates.predictors.state_dict().items()}
    save_file(weights, str(folder / PREDICTORS))
    return folder


def ftwt_checkpoint(checkpoint: Path, dataset_path: Path, cfg, out_dir: Path, *, seed: int = 0):
    """:func:`run_ftwt` on a trained checkpoint and its dataset's train and test splits; the
    gated model is saved to ``out_dir`` (:func:`save_ftwt`).

    Image datasets are read up to the decoded-memory sample of
    :func:`~components.data.decoded_memory.sample_rows` per split.

    Args:
        checkpoint: the trained model's checkpoint folder.
        dataset_path: the dataset it was trained on.
        cfg: the :class:`~components.training.config.TrainConfig` (``ftwt``, ``batch_size``).
        out_dir: where the gated model goes.
        seed: the run's seed.
    """
    from components.data import reader
    from components.data.decoded_memory import sample_rows
    from components.training.trained import load_trained

    model, spec = load_trained(checkpoint, dataset_path)
    limit = sample_rows(reader.load_meta(dataset_path))  # None: every row of an array dataset
    train, test = (
        tuple(torch.as_tensor(a) for a in reader.read_split(dataset_path, split, limit=limit))
        for split in ("train", "test")
    )
    section, gates = run_ftwt(model, train, test, cfg.ftwt, batch_size=cfg.batch_size, seed=seed)
    save_ftwt(Path(out_dir), model, gates, spec)
    return section
