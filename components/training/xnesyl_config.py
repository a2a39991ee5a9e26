"""Settings of X-NeSyL's SHAP-Backprop (``train.xnesyl``; see :mod:`components.training.xnesyl`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.training.settings_block import SettingsBlock

WEIGHTINGS = ("exponential", "linear")
TARGETS = ("label", "predicted")
AUTO_GRAPH = "auto"


@dataclass(frozen=True)
class XNeSyLConfig(SettingsBlock):
    """SHAP-Backprop: weight each training sample's cross-entropy by how far its part-level SHAP
    values disagree with a knowledge graph of which parts make which class.

    Attributes:
        enabled: train with SHAP-Backprop.
        graph: ``auto`` (the ``parts`` source's own class/part relation from the dataset's
            meta) or a YAML file mapping each class name to the list of its part names.
        weighting: ``exponential`` (weight ``exp(-h * m)``, the reference code's default) or
            ``linear`` (``1 - h * m``), where ``m <= 0`` is the sample's worst misattribution.
        h: the reference's scale ``h`` of the misattribution in the weight.
        threshold: a part-class product counts as a misattribution only below ``-threshold``.
        target: the class whose SHAP values are checked: ``label`` (the reference code) or
            ``predicted`` (the model's prediction on the whole image).
        samples: per batch, the samples that get SHAP values (the first ones of the shuffled
            batch; the rest keep weight 1); 0: all. Bounds the cost: each explained sample
            costs ``2^parts`` forward passes without gradient.
        ged_threshold: SHAP value at or above which a part counts as supporting a class in
            the SHAP-GED alignment metric (the reference's 0.01).
    """

    block = "xnesyl"
    enabled: bool = False
    graph: str = AUTO_GRAPH
    weighting: str = "exponential"
    h: float = 1.0
    threshold: float = 0.0
    target: str = "label"
    samples: int = 0
    ged_threshold: float = 0.01

    def __post_init__(self) -> None:
        self.check(
            {
                "enabled": isinstance(self.enabled, bool),
                "graph": isinstance(self.graph, str) and bool(self.graph),
                "weighting": self.weighting in WEIGHTINGS,
                "h": _number(self.h) and self.h > 0,
                "threshold": _number(self.threshold) and self.threshold >= 0,
                "target": self.target in TARGETS,
                "samples": isinstance(self.samples, int) and self.samples >= 0,
                "ged_threshold": _number(self.ged_threshold) and self.ged_threshold > 0,
            },
            f" (weighting: {WEIGHTINGS}, target: {TARGETS}, h > 0, threshold >= 0, "
            "samples >= 0, ged_threshold > 0)",
        )
        if self.graph != AUTO_GRAPH and not Path(self.graph).is_file():
            raise ValueError(
                f"invalid training config: train.xnesyl.graph={self.graph!r}: no such file "
                f"(a YAML of class: [parts...], or {AUTO_GRAPH!r} for a parts dataset)"
            )


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
