"""Lottery-ticket rounds: train, prune by magnitude, rewind, retrain (and a re-initialised control).

Frankle & Carbin 2019, "The Lottery Ticket Hypothesis", Algorithm 1 with iterative pruning:
round 0 trains the dense network from its initialisation theta_0; each later round prunes the
previous ticket's trained weights (:func:`components.pruning.imp_masks.prune_masks`), resets
the survivors to theta_0 (``rewind_epoch=0``) or, as in Frankle et al. 2020 ("Linear Mode
Connectivity and the Lottery Ticket Hypothesis"), to their weights after epoch k of the dense
round, and trains again with the mask held fixed. The control of each round trains the same
mask from a fresh random initialisation (the paper's "random reinitialization").

Departures: rewinding is to an epoch, not an iteration (the fit loop checkpoints per epoch; on
digits one epoch is about 20 iterations at batch 64). The weights pruned are those of the
ticket's best-validation-loss checkpoint (the early-stopping point the fit loop selects), not
of a fixed final iteration; the paper's early-stopping iteration is this checkpoint's epoch.

Training is injected (``train_round``): the Prefect task trains each round with Ray Train, the
tests and the benchmark in-process with the same fit loop. Every round's masks and weights and
the round history are kept in a folder, so an interrupted run continues at the next round.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from components import atomic
from components.pruning.imp_config import PruneConfig
from components.pruning.imp_masks import (
    Masks,
    SparseStart,
    dense_masks,
    prunable_layers,
    prune_masks,
    remaining,
    remaining_per_layer,
)
from components.training.checkpoint import ModelSpec

STATE = "state.json"
# Seeds of the re-initialised controls: far from the run's own seed, different per round.
_CONTROL_SEED_OFFSET = 7919


@dataclass(frozen=True)
class RoundFit:
    """What training one round gives back.

    Attributes:
        weights: the state dict of the best (early-stopping) checkpoint.
        test_accuracy: its accuracy on the test split (None: not scored, as in a sweep trial).
        best_epoch: the early-stopping epoch (lowest validation loss, 1-based).
        epochs_run: epochs trained before early stopping or the epoch limit.
        rewind: the weights after epoch ``capture_epoch`` (when one was asked for).
        val_loss: the best checkpoint's validation loss; ``val_accuracy``: its accuracy.
    """

    weights: dict[str, torch.Tensor]
    test_accuracy: float | None
    best_epoch: int
    epochs_run: int
    rewind: dict[str, torch.Tensor] | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


TrainRound = Callable[[str, SparseStart, int | None], RoundFit]
"""``train_round(tag, start, capture_epoch)``: train ``start`` (tag: ``round-<r>/ticket`` or
``round-<r>/control``, where its files may go) and return its :class:`RoundFit`."""


class LotteryStore:
    """The rounds' files in ``folder``: ``init``/``rewind`` weights, each round's masks and
    ticket weights, and ``state.json`` (the setup and one record per finished round)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def records(self) -> list[dict]:
        """The finished rounds' records (none for a new run)."""
        path = self.folder / STATE
        return json.loads(path.read_text())["rounds"] if path.is_file() else []

    def setup(self) -> dict | None:
        """The spec and config the rounds were started with (None for a new run)."""
        path = self.folder / STATE
        return json.loads(path.read_text())["setup"] if path.is_file() else None

    def save_weights(self, name: str, weights: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(self.folder / f"{name}.safetensors", save(tensors))

    def load_weights(self, name: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.folder / f"{name}.safetensors"))

    def finish_round(self, setup: dict, records: list[dict]) -> None:
        """Record the rounds so far (written last, so a round counts once its files exist)."""
        payload = json.dumps({"setup": setup, "rounds": records}, indent=2)
        atomic.write_text(self.folder / STATE, payload)


def run_lottery(
    spec: ModelSpec,
    config: PruneConfig,
    train_round: TrainRound,
    store: LotteryStore,
    on_round: Callable[[dict], None] = lambda record: None,
) -> list[dict]:
    """Run (or continue) the dense round and ``config.rounds`` pruning rounds.

    Args:
        spec: the model; round 0's initialisation is ``spec.build()`` under ``config.seed``.
        config: rounds, rates, rewinding, control.
        train_round: trains one start state with fixed masks (see :data:`TrainRound`).
        store: where rounds are kept; rounds it already holds are not trained again.
        on_round: called with each newly finished round's record.

    Returns:
        One record per round: ``round``, ``remaining`` (share of prunable weights alive),
        ``layers`` (share per layer), ``ticket`` and ``control`` (``test_accuracy``,
        ``val_loss``, ``val_accuracy``, ``best_epoch``, ``epochs_run``; control None in round 0
        or without controls).
    """
    setup = json.loads(json.dumps({"spec": asdict(spec), "config": asdict(config)}))
    check_same_setup(store, setup)
    records = store.records()
    if not records:
        _dense_round(spec, config, train_round, store, setup, records, on_round)
    kinds = prunable_layers(spec.build(load_pretrained=False))
    for index in range(len(records), config.rounds + 1):
        masks = prune_masks(
            store.load_weights(f"round-{index - 1}/masks"),
            store.load_weights(f"round-{index - 1}/ticket"),
            kinds,
            config,
        )
        store.save_weights(f"round-{index}/masks", masks)
        rewind = store.load_weights("rewind" if config.rewind_epoch else "init")
        ticket = train_round(f"round-{index}/ticket", SparseStart(masks, rewind), None)
        control = None
        if config.control:
            fresh = initial_weights(spec, config.seed + _CONTROL_SEED_OFFSET * index)
            control = train_round(f"round-{index}/control", SparseStart(masks, fresh), None)
        store.save_weights(f"round-{index}/ticket", ticket.weights)
        records.append(_record(index, masks, ticket, control))
        store.finish_round(setup, records)
        on_round(records[-1])
    return records


def check_same_setup(store: LotteryStore, setup: dict) -> None:
    """``ValueError`` naming what differs when ``store`` holds rounds of another setup (only
    ``rounds`` may grow on a resume)."""
    saved = store.setup()
    if saved is None:
        return
    ignore = {"rounds"}
    changed = [
        f"prune.{key}"
        for key in setup["config"]
        if key not in ignore and saved["config"].get(key) != setup["config"][key]
    ]
    changed += ["model"] if saved["spec"] != setup["spec"] else []
    if changed:
        raise ValueError(
            f"{store.folder} holds lottery rounds of another setup ({', '.join(changed)} "
            "differ): resume with the overrides the run started with"
        )


def _dense_round(spec, config, train_round, store, setup, records, on_round) -> None:
    init = initial_weights(spec, config.seed)
    store.save_weights("init", init)
    masks = dense_masks(spec.build(load_pretrained=False))
    capture = config.rewind_epoch or None
    fit = train_round("round-0/ticket", SparseStart(masks, init), capture)
    if capture is not None:
        if fit.rewind is None:
            raise ValueError(
                f"prune.rewind_epoch={capture}: the dense round stopped after epoch "
                f"{fit.epochs_run}, before the epoch to rewind to"
            )
        store.save_weights("rewind", fit.rewind)
    store.save_weights("round-0/masks", masks)
    store.save_weights("round-0/ticket", fit.weights)
    records.append(_record(0, masks, fit, None))
    store.finish_round(setup, records)
    on_round(records[-1])


def initial_weights(spec: ModelSpec, seed: int) -> dict[str, torch.Tensor]:
    """The state dict of ``spec.build()`` under ``torch.manual_seed(seed)`` (pretrained trunk
    weights included, when the spec names them)."""
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in spec.build().state_dict().items()}


def _record(index: int, masks: Masks, ticket: RoundFit, control: RoundFit | None) -> dict:
    return {
        "round": index,
        "remaining": remaining(masks),
        "layers": remaining_per_layer(masks),
        "ticket": _outcome(ticket),
        "control": None if control is None else _outcome(control),
    }


def _outcome(fit: RoundFit) -> dict:
    return {
        "test_accuracy": fit.test_accuracy,
        "val_loss": fit.val_loss,
        "val_accuracy": fit.val_accuracy,
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
    }


def lottery_section(spec: ModelSpec, config: PruneConfig, records: list[dict]) -> dict:
    """What a run's ``prune.json`` and report section hold: the model, the config, the rounds."""
    return {"model": spec.name, "config": asdict(config), "rounds": records}


def lottery_headline(records: list[dict]) -> dict:
    """The dense network's and the sparsest ticket's (and its control's) test accuracy."""
    dense, last = records[0], records[-1]
    headline = {
        "dense_test_accuracy": dense["ticket"]["test_accuracy"],
        "dense_best_epoch": dense["ticket"]["best_epoch"],
        "ticket_remaining": last["remaining"],
        "ticket_test_accuracy": last["ticket"]["test_accuracy"],
        "ticket_best_epoch": last["ticket"]["best_epoch"],
    }
    if last["control"] is not None:
        headline["reinit_test_accuracy"] = last["control"]["test_accuracy"]
    return headline
