"""Trust check ``segmentation``: weakly-supervised segmentation from a model's evidence maps.

Chatterjee, Yassin, Dubost, Nuernberger & Speck, "Weakly-supervised segmentation using
inherently-explainable classification models and their application to brain tumour
classification" (Neurocomputing 2026, arXiv:2206.05148; reference code soumickmj/GPModels,
``Local_Post-Processing.py``, read). A classifier trained on labels alone segments by
thresholding its heatmap of the predicted class; the paper reports a median Dice of 0.67 +- 0.08
on BraTS. Here the heatmaps are the class-evidence maps of ProtoPNet / ST-ProtoPNet and the CAM
of the ``cnn`` / ``resnet`` baselines, beside Integrated Gradients and an untrained network of
the same architecture (:mod:`.maps`); Dice and IoU are measured against the
dataset's masks. The claim checked: the trained model's own maps segment better (higher mean
test Dice) than IG and than the untrained network.

Departures from the reference code:

* Threshold: the reference suppresses negative values, takes each image's top multi-Otsu
  threshold minus an offset, and picks the offset from a grid (0.4 to 1.0) by looking at test
  results. Here each map is divided by its maximum and one threshold, a fraction of that
  maximum (as CAM's own localisation rule, 20% of the maximum, Zhou et al. 2016), is chosen from
  a grid by the mean Dice on *validation* images and reported on test images, so every map kind
  gets the same rule and nothing is tuned on test.
* Dice and IoU without the reference's +1 smoothing (1 when both masks are empty).
* Ground truth on ``parts``: the pixels of the two parts of the image's class; the distractor
  parts, which no class uses, count as background (:func:`.scores.object_masks`).
  The brain-tumour masks mark the one region that decides the class, and so do these.
  On any other dataset every nonzero mask pixel is the object.

Only datasets with a mask column can be checked: the ``parts`` source writes one, and so does
the ingest of an image folder with a ``masks/`` folder (:mod:`components.data.image_folder`).
Whether a dataset has masks is known only once the run's data exists, so a dataset without them
gets the verdict "not applicable: ..." (no error); so does a dataset that is not images.
"""

from __future__ import annotations

import numpy as np
import torch

from components.data.errors import DataError
from components.data.reader import read_masks, read_split
from components.explain.checks.runner import CheckContext
from components.explain.checks.segmentation.eval import Split, map_kinds, segment
from components.explain.checks.segmentation.scores import object_masks
from components.training.checkpoint import load_spec

DEFAULTS = {"val_samples": 128, "test_samples": 128, "thresholds": 19, "shown": 4}


def settings_of(settings: dict) -> dict:
    """The block with defaults filled in."""
    return DEFAULTS | dict(settings)


def validate(settings: dict) -> None:
    """``ValueError`` naming ``explain.segmentation.<key>`` for an unknown key or a bad value."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"explain.segmentation: unknown key(s) {unknown}; valid keys: {list(DEFAULTS)}"
        )
    values = settings_of(settings)
    for key in ("val_samples", "test_samples", "thresholds"):
        if not _is_int(values[key]) or values[key] < 1:
            raise ValueError(f"explain.segmentation.{key}={values[key]!r}: must be an integer >= 1")
    shown = values["shown"]
    if not _is_int(shown) or not 0 <= shown <= values["test_samples"]:
        raise ValueError(
            f"explain.segmentation.shown={shown!r}: must be an integer from 0 to "
            f"explain.segmentation.test_samples ({values['test_samples']})"
        )


def run(context: CheckContext) -> dict:
    """Segment validation and test images with each map kind; see the module docstring."""
    settings = settings_of(context.settings)
    reason = _not_applicable(context)
    if reason:
        return {"verdict": f"not applicable: {reason}", "summary": {"applicable": False}}
    val = _split(context, "val", settings["val_samples"])
    test = _split(context, "test", settings["test_samples"])
    kinds = map_kinds(context.model, _untrained(context), context.config.ig_steps)
    result = segment(kinds, val, test, settings["thresholds"])
    shown = settings["shown"]
    return result | {
        "verdict": verdict(result["kinds"], len(test.x)),
        "summary": _summary(result["kinds"], len(val.x), len(test.x)),
        "examples": {
            "images": _pixels(test.x[:shown], context.meta),
            "truth": test.truth[:shown],
        },
    }


def verdict(kinds: dict, test_images: int) -> str:
    """One line: the model's own maps' test Dice against IG's and the untrained network's."""
    scores = {key: kind["test"] for key, kind in kinds.items()}
    if "model" not in kinds:
        return (
            f"not applicable: the model has no class-evidence map (ProtoPNet, ST-ProtoPNet, "
            f"cnn, resnet have one); Integrated Gradients reach Dice {scores['ig']['dice']:.2f}, "
            f"the untrained network {scores['untrained']['dice']:.2f} on {test_images} test images"
        )
    own = scores["model"]
    passed = own["dice"] > max(scores["ig"]["dice"], scores["untrained"]["dice"])
    return (
        f"{kinds['model']['label']} maps segment with Dice {own['dice']:.2f} (IoU "
        f"{own['iou']:.2f}) on {test_images} test images, "
        f"{'above' if passed else 'not above'} Integrated Gradients {scores['ig']['dice']:.2f} "
        f"and the untrained network {scores['untrained']['dice']:.2f}: "
        f"{'pass' if passed else 'flag'}"
    )


def _not_applicable(context: CheckContext) -> str | None:
    """Why the check cannot run on this dataset, or None when it can."""
    shape = tuple(context.meta.feature_shape)
    if len(shape) != 3:
        return f"the check needs images (C, H, W); this dataset's samples are {list(shape)}"
    try:
        masks = read_masks(context.dataset_path, "test")
    except DataError:
        return (
            "the dataset has no masks (the parts source writes them; an image folder needs "
            "a masks/ folder with one PNG per image)"
        )
    if masks.shape[1:] != shape[1:]:
        return f"the masks are {list(masks.shape[1:])}, the images {list(shape[1:])}"
    if not context.meta.row_counts["val"] or not context.meta.row_counts["test"]:
        return "the dataset needs validation images (to choose the threshold) and test images"
    return None


def _split(context: CheckContext, split: str, limit: int) -> Split:
    """The first ``limit`` images of ``split`` and their object masks."""
    x, y = read_split(context.dataset_path, split, limit=limit)
    labels = read_masks(context.dataset_path, split)[: len(y)]
    return Split(x, object_masks(labels, y, context.meta.raw))


def _untrained(context: CheckContext) -> torch.nn.Module:
    """The same architecture freshly initialised under the run's seed (no pretrained trunk)."""
    with torch.random.fork_rng():
        torch.manual_seed(context.seed)
        return load_spec(context.checkpoint).build(load_pretrained=False).eval()


def _pixels(x: np.ndarray, meta) -> np.ndarray:
    """Standardised images ``(N, C, H, W)`` as displayable ``(N, H, W, 3)`` in ``[0, 1]``."""
    raw = x.reshape(len(x), -1) * meta.std + meta.mean
    images = np.clip(raw.reshape(x.shape), 0.0, 1.0).transpose(0, 2, 3, 1)
    return np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images[..., :3]


def _summary(kinds: dict, val_images: int, test_images: int) -> dict:
    """The JSON numbers of ``checks.json``: per kind its test scores and threshold."""
    return {
        "applicable": True,
        "val_images": val_images,
        "test_images": test_images,
        **{key: dict(kind["test"]) for key, kind in kinds.items()},
    }


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
