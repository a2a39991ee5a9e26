"""The settings of the BEYOND adversarial-detection check (``explain.beyond.<key>``).

Budgets are l2 norms in the model's input space (standardised features, as
:func:`components.evaluation.robustness.pgd_l2` measures them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from components.ssl.views import ViewConfig

# The neighbours' augmentations: the SSL views minus the horizontal flip (a flipped digit is
# another glyph, so a clean input's neighbours would disagree with it).
DEFAULT_VIEWS = {
    "crop_scale": 0.6,
    "flip": False,
    "jitter": 0.4,
    "noise_std": 0.2,
    "feature_drop": 0.2,
}


@dataclass(frozen=True)
class BeyondSettings:
    """What ``explain.beyond`` sets (``conf/explain/default.yaml`` documents each key).

    Attributes:
        samples: test inputs attacked and scored (clean vs adversarial).
        val_samples: clean validation inputs the detection thresholds are set on.
        eps: the two l2 budgets of the PGD attacks.
        steps: gradient steps of every attack.
        neighbours: augmented neighbours per input (the reference's ``aug_num``, 50).
        k: the detection score is the ``k``-th largest neighbour score (the reference's K, 20).
        alpha: weight of label agreement vs representation similarity in that score (0.8).
        clean_fpr: share of clean validation inputs the two thresholds together may flag.
        floor: the verdict passes when the detection AUROC reaches it at both PGD budgets.
        adaptive_eps: budget of the adaptive attack; None: the larger of ``eps``.
        adaptive_neighbours: neighbours the adaptive attack draws per step.
        adaptive_weight: weight of its representation-similarity term (the reference's 1).
        ssl_epochs: Barlow Twins epochs of the encoder trained here when the run has none.
        ssl_rows: training rows that encoder and the SSL classifier head are fitted on.
        views: the neighbours' augmentations (:class:`~components.ssl.views.ViewConfig`).
    """

    samples: int = 200
    val_samples: int = 200
    eps: tuple[float, float] = (1.0, 2.0)
    steps: int = 50
    neighbours: int = 50
    k: int = 20
    alpha: float = 0.8
    clean_fpr: float = 0.05
    floor: float = 0.75
    adaptive_eps: float | None = None
    adaptive_neighbours: int = 8
    adaptive_weight: float = 1.0
    ssl_epochs: int = 20
    ssl_rows: int = 2000
    views: ViewConfig = field(default_factory=lambda: ViewConfig(**DEFAULT_VIEWS))

    @property
    def adaptive_budget(self) -> float:
        """The adaptive attack's l2 budget."""
        return max(self.eps) if self.adaptive_eps is None else self.adaptive_eps


_POSITIVE_INTS = ("samples", "val_samples", "steps", "neighbours", "adaptive_neighbours")
_POSITIVE_INTS += ("ssl_epochs", "ssl_rows", "k")


def parse_settings(block: Mapping) -> BeyondSettings:
    """``explain.beyond`` as :class:`BeyondSettings`; ``ValueError`` naming the bad key."""
    known = {f.name for f in fields(BeyondSettings)}
    unknown = sorted(set(block) - known)
    if unknown:
        raise ValueError(f"explain.beyond: unknown keys {unknown}; known: {sorted(known)}")
    values = dict(block)
    for name in _POSITIVE_INTS:
        if name in values and not _is_int(values[name], minimum=1):
            _fail(name, values[name], "a positive integer")
    if "eps" in values:
        values["eps"] = _budgets(values["eps"])
    if values.get("adaptive_eps") is not None and not _is_budget(values["adaptive_eps"]):
        _fail("adaptive_eps", values["adaptive_eps"], "a number > 0 or null")
    for name, low, high in (("alpha", 0.0, 1.0), ("clean_fpr", 0.0, 0.5), ("floor", 0.5, 1.0)):
        if name in values and not (_is_number(values[name]) and low <= values[name] <= high):
            _fail(name, values[name], f"a number in [{low}, {high}]")
    if "adaptive_weight" in values and not (
        _is_number(values["adaptive_weight"]) and values["adaptive_weight"] >= 0
    ):
        _fail("adaptive_weight", values["adaptive_weight"], "a number >= 0")
    if "views" in values:
        values["views"] = _views(values["views"])
    settings = BeyondSettings(**values)
    if settings.k > settings.neighbours:
        _fail("k", settings.k, f"at most explain.beyond.neighbours={settings.neighbours}")
    return settings


def _budgets(value) -> tuple[float, float]:
    if not (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(map(_is_budget, value))
    ):
        _fail("eps", value, "two l2 budgets > 0, e.g. [1.0, 2.0]")
    return (float(value[0]), float(value[1]))


def _views(value) -> ViewConfig:
    if not isinstance(value, Mapping):
        _fail("views", value, f"a mapping of {sorted(DEFAULT_VIEWS)}")
    try:
        return ViewConfig(**{**DEFAULT_VIEWS, **dict(value)})
    except (TypeError, ValueError) as err:
        message = str(err).replace("ViewConfig.__init__()", "").replace("ViewConfig.", "")
        raise ValueError(f"explain.beyond.views: {message.strip()}") from err


def _fail(name: str, value, expected: str):
    raise ValueError(f"explain.beyond.{name}={value!r}: expected {expected}")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_budget(value) -> bool:
    return _is_number(value) and value > 0
