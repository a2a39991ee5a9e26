"""Typed configuration of iterative magnitude pruning (``conf/prune/default.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

METHODS = ("imp",)
SCOPES = ("layerwise", "global")


@dataclass(frozen=True)
class PruneConfig:
    """How the lottery-ticket rounds prune and rewind.

    Attributes:
        method: ``imp`` (iterative magnitude pruning, Frankle & Carbin 2019).
        rounds: pruning rounds after the dense round 0.
        rate: share of the remaining weights pruned per round in fully connected layers
            (layer-wise scope) or over all prunable weights (global scope); the paper's 0.2.
        conv_rate: per-round rate of convolution layers (layer-wise; the paper's 0.1-0.15).
        output_rate: per-round rate of the output layer; ``None``: half of ``rate`` (the paper).
        scope: ``layerwise`` (each layer its own rate, the paper's LeNet/Conv-2/4/6) or
            ``global`` (one magnitude threshold over every prunable layer, as for its deep nets).
        rewind_epoch: 0 resets the survivors to their initial weights; k > 0 to their weights
            after epoch k of the dense round (Frankle et al. 2020's rewinding).
        control: also train each round's masks from a fresh random initialisation.
        seed: seeds the re-initialised controls.
    """

    method: str = "imp"
    rounds: int = 8
    rate: float = 0.2
    conv_rate: float = 0.1
    output_rate: float | None = None
    scope: str = "layerwise"
    rewind_epoch: int = 0
    control: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "method": self.method in METHODS,
            "rounds": isinstance(self.rounds, int) and self.rounds >= 1,
            "rate": 0 < self.rate < 1,
            "conv_rate": 0 < self.conv_rate < 1,
            "output_rate": self.output_rate is None or 0 <= self.output_rate < 1,
            "scope": self.scope in SCOPES,
            "rewind_epoch": isinstance(self.rewind_epoch, int) and self.rewind_epoch >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"prune.{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(
                f"invalid prune config: {values} (method one of {list(METHODS)}, rounds >= 1, "
                f"rates in (0, 1), scope one of {list(SCOPES)}, rewind_epoch >= 0)"
            )

    @property
    def layer_output_rate(self) -> float:
        """The output layer's per-round rate."""
        return self.rate / 2 if self.output_rate is None else self.output_rate

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of all fields (what a search space may name as ``prune.<field>``)."""
        return [f.name for f in fields(cls)]
