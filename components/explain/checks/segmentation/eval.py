"""Segment with each kind of map: threshold chosen on validation images, scored on test ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from components.explain.checks.segmentation.maps import (
    evidence_kind,
    evidence_maps,
    ig_maps,
    predicted_classes,
    unit_maps,
)
from components.explain.checks.segmentation.scores import (
    choose_threshold,
    dice_by_threshold,
    scores_at,
    threshold_grid,
)


@dataclass(frozen=True)
class Split:
    """Standardised images ``x`` ``(N, C, H, W)`` and their object masks ``truth`` ``(N, H, W)``."""

    x: np.ndarray
    truth: np.ndarray


# A map kind: ``maps(x) -> (N, H, W)`` for the class the network predicts.
MapFn = Callable[[np.ndarray], np.ndarray]


def map_kinds(
    model: nn.Module, untrained: nn.Module, ig_steps: int
) -> dict[str, tuple[str, MapFn]]:
    """``{key: (label, maps)}``: the model's own class-evidence map (when it has one),
    Integrated Gradients, and the untrained network's own map (IG when it has none)."""

    def own(net: nn.Module) -> MapFn:
        return lambda x: evidence_maps(net, x, predicted_classes(net, x))

    def ig(net: nn.Module) -> MapFn:
        return lambda x: ig_maps(net, x, predicted_classes(net, x), ig_steps)

    kind = evidence_kind(model)
    kinds = {"model": (kind, own(model))} if kind else {}
    kinds["ig"] = ("Integrated Gradients", ig(model))
    kinds["untrained"] = (
        f"untrained network ({kind or 'IG'})",
        own(untrained) if kind else ig(untrained),
    )
    return kinds


def segment(kinds: dict[str, tuple[str, MapFn]], val: Split, test: Split, thresholds: int) -> dict:
    """Per map kind: mean Dice against the threshold on ``val``, the best threshold, and the
    Dice / IoU of ``test`` at that threshold, with the test masks.

    Returns:
        ``{"thresholds": [...], "kinds": {key: {"label", "val_dice", "test": {dice,
        dice_median, iou, threshold}, "masks": bool (N, H, W)}}}``.
    """
    grid = threshold_grid(thresholds)
    out = {}
    for key, (label, maps) in kinds.items():
        curve = dice_by_threshold(unit_maps(maps(val.x)), val.truth, grid)
        chosen = choose_threshold(curve, grid)
        test_maps = unit_maps(maps(test.x))
        out[key] = {
            "label": label,
            "val_dice": curve.tolist(),
            "test": scores_at(test_maps, test.truth, chosen),
            "masks": test_maps > chosen,
        }
    return {"thresholds": grid.tolist(), "kinds": out}
