"""Which explanation method to trust for this model: rank methods by faithfulness on held-out data.

Han et al. 2022 ("Which explanation should I choose? A function approximation perspective")
show that LIME, C-LIME, KernelSHAP, Occlusion, gradients, gradient x input, SmoothGrad and IG all
fit a local model of the black box, differing only in neighbourhood and loss, and that no method
is the most faithful in every neighbourhood (no free lunch). Their guiding principle: measure
faithfulness to the model in the neighbourhood one cares about and pick the winner.

Every metric takes ``groups`` (patches or superpixels): on large images the methods are then
compared on the interpretable features a reader looks at, at a cost set by the number of groups.

Default metric: ``infidelity_gaussian`` (Yeh et al. 2019's infidelity under small Gaussian
perturbations; lower is better), as the explain stage's ``explain.rank_by``
(``conf/explain/default.yaml``, :class:`~components.explain.config.ExplainConfig`): the
local-function-approximation loss of Han et al. in the continuous neighbourhood of SmoothGrad /
C-LIME, which asks how well an explanation predicts the model's response to small changes of
the input. Removal metrics (``infidelity``: random subsets removed; PGI, Agarwal et al. 2022,
OpenXAI: the top-``k`` features removed; deletion / insertion) judge a neighbourhood of removed
features instead, set by the ``Removal`` (default: the zero baseline); PGU removes almost all
features at once, further from the data. The ranking is only as general as that neighbourhood,
and the winner changes with it: on a model with a saturated input and an interaction, the
Gaussian metric picks the gradient, random-subset removal picks IG and top-1 removal picks
occlusion (``tests/components/evaluation/test_chooser_neighbourhood.py``). Rank again under the
perturbations that matter for the use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
from torch import nn

from components.evaluation.faithfulness import (
    Removal,
    Target,
    deletion_auc,
    feature_labels,
    fidelity,
    infidelity,
    insertion_auc,
    pgi,
    pgu,
    resolve_target,
    robust_fidelity,
)
from components.perturbation.groups import num_groups
from components.tensors import as_float_tensor

_BOOTSTRAP_CELLS = 2_000_000  # bootstrap draws held in memory at once (methods x reps x samples)


def _fid(key: str, robust: bool = False) -> Callable[..., np.ndarray]:
    def score(model, x, attr, *, k, **kwargs):
        return (robust_fidelity if robust else fidelity)(model, x, attr, k, **kwargs)[key]

    return score


def _without_k(metric: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    return lambda model, x, attr, *, k, **kwargs: metric(model, x, attr, **kwargs)


# name -> (score(model, x, attributions, *, k, target, removal, seed, ...) -> (N,), higher better)
METRICS: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "pgi": (lambda model, x, attr, *, k, **kw: pgi(model, x, attr, k, **kw), True),
    "pgu": (lambda model, x, attr, *, k, **kw: pgu(model, x, attr, k, **kw), False),
    "fid_plus": (_fid("fid_plus"), True),
    "fid_minus": (_fid("fid_minus"), False),
    "fid_delta": (_fid("fid_delta"), True),
    "robust_fid_delta": (_fid("fid_delta", robust=True), True),
    "deletion": (_without_k(deletion_auc), False),
    "insertion": (_without_k(insertion_auc), True),
    "infidelity": (_without_k(infidelity), False),
    # Infidelity in a small Gaussian neighbourhood: the local-function-approximation loss of
    # Han et al. (2022) for the continuous neighbourhood of SmoothGrad / C-LIME.
    "infidelity_gaussian": (_without_k(partial(infidelity, perturbation="gaussian")), False),
}


def _score_matrix(per_sample_scores: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Method names and ``(M, n)`` scores on the samples every method scored (no NaN)."""
    if not per_sample_scores:
        raise ValueError("per_sample_scores is empty")
    names = list(per_sample_scores)
    rows = [np.asarray(per_sample_scores[name], dtype=np.float64).ravel() for name in names]
    if len({len(row) for row in rows}) != 1:
        sizes = {name: len(row) for name, row in zip(names, rows, strict=True)}
        raise ValueError(f"methods were scored on different numbers of samples: {sizes}")
    scores = np.stack(rows)
    scores = scores[:, ~np.isnan(scores).any(axis=0)]
    if scores.shape[1] == 0:
        raise ValueError("no sample has a defined score for every method")
    return names, scores


def _bootstrap_means(scores: np.ndarray, num_bootstrap: int, seed: int) -> np.ndarray:
    """``(M, B)`` means over paired resamples: one index set per replicate for all methods."""
    rng = np.random.default_rng(seed)
    methods, n = scores.shape
    means = np.empty((methods, num_bootstrap))
    chunk = max(1, _BOOTSTRAP_CELLS // (methods * n))
    for start in range(0, num_bootstrap, chunk):
        size = min(chunk, num_bootstrap - start)
        idx = rng.integers(0, n, size=(size, n))
        means[:, start : start + size] = scores[:, idx].mean(axis=2)
    return means


def rank_methods(
    per_sample_scores: Mapping[str, Any],
    *,
    higher_is_better: bool,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    tie_tolerance: float = 1e-9,
) -> list[dict]:
    """Rank methods by mean per-sample score, with paired bootstrap confidence intervals.

    Scores are rounded to ``tie_tolerance`` first, so methods that are equally faithful up to
    float error (e.g. every exact method on a linear model) tie, and ties keep the input order:
    pass the methods in order of preference (e.g. deterministic before sampled).

    Samples with a NaN score for any method are dropped, so every method is judged on the same
    samples. Each bootstrap replicate resamples the samples with replacement, one index set for
    all methods (paired), and records every method's mean; the CI is the percentile interval of
    those means, ``p_best`` the share of replicates in which the method is best (ties split).

    Returns:
        One dict per method, best first: ``rank`` (1 = best), ``method``, ``mean``, ``ci_low``,
        ``ci_high``, ``p_best``, ``num_samples``. Ties in the mean keep the input order.
    """
    if num_bootstrap < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(
            f"need num_bootstrap >= 1, 0 < confidence < 1; got {num_bootstrap}, {confidence}"
        )
    names, scores = _score_matrix(per_sample_scores)
    if tie_tolerance > 0:
        scores = np.round(scores / tie_tolerance) * tie_tolerance
    sign = 1.0 if higher_is_better else -1.0
    means = scores.mean(axis=1)
    boot = _bootstrap_means(scores, num_bootstrap, seed)
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2], axis=1)
    best = sign * boot == (sign * boot).max(axis=0)
    p_best = (best / best.sum(axis=0)).mean(axis=1)
    order = sorted(range(len(names)), key=lambda i: (-sign * means[i], i))
    return [
        {
            "rank": rank,
            "method": names[i],
            "mean": float(means[i]),
            "ci_low": float(low[i]),
            "ci_high": float(high[i]),
            "p_best": float(p_best[i]),
            "num_samples": scores.shape[1],
        }
        for rank, i in enumerate(order, start=1)
    ]


def default_k(x: Any, groups: Any = None, fraction: float = 0.25) -> int:
    """``fraction`` of the features (at least 1): the ``k`` used when none is given.

    A feature is an element of ``x``, or with ``groups`` (as the metrics take them) one group:
    on 224x224 images in 64 patches, k counts patches, not pixels.
    """
    x = as_float_tensor(x)
    labels = feature_labels(x, groups)
    num_features = x[0].numel() if labels is None else num_groups(labels)
    return max(1, round(fraction * num_features))


def choose_method(
    model: nn.Module,
    x: Any,
    attributions: Mapping[str, Any],
    *,
    metric: str = "infidelity_gaussian",
    k: int | None = None,
    target: Target = None,
    removal: Removal | None = None,
    seed: int = 0,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    **metric_kwargs: Any,
) -> list[dict]:
    """Score every method's attributions on held-out ``x`` with ``metric`` and rank them.

    Args:
        model: the model explained.
        x: held-out inputs ``(N, *shape)``, not the data the explainers were tuned on.
        attributions: method name -> attributions shaped like ``x``.
        metric: a key of :data:`METRICS` (default ``infidelity_gaussian``, as the explain
            stage's; see the module docstring).
        k: features in the explanation for top-k metrics (default :func:`default_k`).
        target: class explained per sample (default: the predicted class, fixed once for all
            methods).
        removal: how features are removed (default: the zero baseline). Every method sees the
            same random draws (same ``seed``), so the comparison is paired.
        metric_kwargs: passed on to the metric (e.g. ``groups``, ``pixel_level``, ``steps``,
            ``alpha1``); ``groups`` also sets what ``k`` counts.

    Returns:
        :func:`rank_methods`'s list, best first.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    score, higher_is_better = METRICS[metric]
    x = as_float_tensor(x)
    target = resolve_target(model, x, target)
    k = default_k(x, metric_kwargs.get("groups")) if k is None else k
    scores = {
        name: score(model, x, attr, k=k, target=target, removal=removal, seed=seed, **metric_kwargs)
        for name, attr in attributions.items()
    }
    return rank_methods(
        scores,
        higher_is_better=higher_is_better,
        num_bootstrap=num_bootstrap,
        confidence=confidence,
        seed=seed,
    )
