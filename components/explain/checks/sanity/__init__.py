"""``explain.checks=[sanity]``: the model-parameter randomisation test of Adebayo et al. (2018),
"Sanity Checks for Saliency Maps" (reference code github.com/adebayoj/sanity_checks_saliency).

Every post-hoc method the explain stage ranked is re-run on the first ``samples`` test inputs
after each step of a cascading randomisation of the model's layers from the top down
(:mod:`components.explain.checks.sanity.cascade`), and compared with its explanation of the
trained model (:mod:`components.evaluation.attribution_similarity`: Spearman rank correlation of
the absolute maps; SSIM of the normalised maps on images). A method whose maps are still more
similar than ``threshold`` once every layer is randomised does not depend on what the model
learned: it is flagged and excluded from the chooser's recommendation. The paper's Sobel edge
detector runs beside them as a control (``control``), which must be flagged.

Departures: the paper reports the similarity curves and leaves the verdict to the reader; a
pass/flag needs a threshold, here 0.8 by default (a map that keeps 80% of its similarity after
all learned parameters are gone has not changed in substance; on the tiny ``cnn`` on digits
gradients fall to about 0.1 SSIM, IG and gradient x input, which carry the input's own
structure as the paper notes, to about 0.4, the edge detector stays at 1). ``similarity=auto``
judges images by SSIM, the paper's visual measure, which the input's pixel ranking sways less
than Spearman, and other data by Spearman. Each method runs with the stage's own settings
(counts, feature groups, seed) and explains the trained model's predicted class at every step.

Not applicable (a verdict, not an error; neither is knowable from the check's own settings):
when the stage ran no post-hoc method (``explain.methods=[]``), and ``similarity=ssim`` on data
that are not images.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from components.data.reader import read_split
from components.evaluation.attribution_similarity import is_image
from components.explain.checks.runner import CheckContext
from components.explain.checks.sanity.cascade import Cascade, cascade
from components.explain.checks.sanity.controls import edge_detector
from components.explain.posthoc.stage import attribute_with
from components.perturbation.groups import group_labels

DEFAULTS = {"samples": 8, "threshold": 0.8, "similarity": "auto", "control": True}
MEASURES = ("auto", "spearman", "ssim")
CONTROL = "edge_detector"
MEASURE_NAMES = {"spearman": "Spearman", "ssim": "SSIM"}


def validate(settings: Mapping) -> None:
    """``ValueError`` naming ``explain.sanity.<key>`` for an unknown key or a bad value."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"explain.sanity: unknown key(s) {unknown}; it takes {list(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    if isinstance(s["samples"], bool) or not isinstance(s["samples"], int) or s["samples"] < 1:
        raise ValueError(f"explain.sanity.samples must be an integer >= 1, got {s['samples']!r}")
    threshold = s["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ValueError(f"explain.sanity.threshold must be a number, got {threshold!r}")
    if not 0 < threshold < 1:
        raise ValueError(
            f"explain.sanity.threshold must lie in (0, 1) (a similarity above it is flagged), "
            f"got {threshold!r}"
        )
    if s["similarity"] not in MEASURES:
        raise ValueError(
            f"explain.sanity.similarity must be one of {list(MEASURES)}, got {s['similarity']!r}"
        )
    if not isinstance(s["control"], bool):
        raise ValueError(f"explain.sanity.control must be true or false, got {s['control']!r}")


def run(context: CheckContext) -> dict:
    """Randomise the model from the top down, compare every ranked method's maps, flag."""
    s = {**DEFAULTS, **context.settings}
    post_hoc = context.explanations.get("post_hoc") or {}
    methods = list(post_hoc.get("methods") or [])
    shape = tuple(context.meta.feature_shape)
    if not methods:
        return _not_applicable("no post-hoc method ran (explain.methods is empty)")
    image = is_image(shape)
    measure = s["similarity"] if s["similarity"] != "auto" else ("ssim" if image else "spearman")
    if measure == "ssim" and not image:
        return _not_applicable(
            f"explain.sanity.similarity=ssim needs (C, H, W) images, these inputs are {shape}: "
            "use spearman or auto"
        )
    x, _ = read_split(context.dataset_path, "test", limit=s["samples"])
    explainers = _explainers(methods, x, context.config)
    if s["control"]:
        explainers[CONTROL] = edge_detector
    found = cascade(context.model, x, explainers, image=image, seed=context.seed)
    return _result(found, methods, measure, float(s["threshold"]), x, post_hoc)


def _explainers(methods: list[str], x: np.ndarray, config) -> dict:
    """Each method as the stage ran it, explaining a given target with any model."""
    groups = group_labels(x, config.feature_groups, config.patch_size)

    def explainer(method: str):
        return lambda model, inputs, target: attribute_with(
            model, method, inputs, groups, config, target
        )

    return {method: explainer(method) for method in methods}


def _result(found: Cascade, methods, measure: str, threshold: float, x, post_hoc) -> dict:
    final = {name: float(s[measure][-1].mean()) for name, s in found.similarity.items()}
    flagged = [m for m in methods if final[m] > threshold]
    layers = len(found.layers)
    name = MEASURE_NAMES[measure]
    if flagged:
        reasons = post_hoc.setdefault("exclusion_reasons", {})
        for m in flagged:
            reasons[m] = (
                f"sanity check: {name} {final[m]:.2f} to its maps of the trained model after "
                f"randomising all {layers} layers (threshold {threshold:g})"
            )
    return {
        "verdict": _verdict(final, methods, flagged, name, threshold, layers),
        "summary": {
            "measure": measure,
            "threshold": threshold,
            "samples": len(x),
            "layers": found.layers,
            "final_similarity": final,
            "flagged": flagged,
            "control_flagged": final[CONTROL] > threshold if CONTROL in final else None,
        },
        "exclude_methods": flagged,
        "measure": measure,
        "threshold": threshold,
        "methods": methods,
        "layers": found.layers,
        "curves": {
            name: {k: v.mean(axis=1).tolist() for k, v in s.items()}
            for name, s in found.similarity.items()
        },
        "maps": found.maps,
        "input": x[0],
    }


def _verdict(final, methods, flagged, name: str, threshold: float, layers: int) -> str:
    scores = ", ".join(f"{m} {final[m]:.2f}" for m in methods)
    head = (
        f"{len(flagged)} of {len(methods)} methods flagged ({', '.join(flagged)}: maps barely "
        "change, excluded from the recommendation)"
        if flagged
        else f"pass: every method's maps change (all {len(methods)} below the threshold)"
    )
    line = (
        f"{head}; {name} to the trained model's maps after randomising all {layers} layers "
        f"(flag above {threshold:g}): {scores}"
    )
    if CONTROL in final:
        line += f"; control edge detector {final[CONTROL]:.2f}"
    return line


def _not_applicable(why: str) -> dict:
    return {"verdict": f"not applicable: {why}", "summary": {"applicable": False}}
