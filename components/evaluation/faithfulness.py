"""Faithfulness of attributions: does removing what an explanation marks move the prediction?

Every metric returns one value per sample, shape ``(N,)`` (so the explanation chooser can bootstrap
over samples); :func:`mean_score` averages them.

* PGI / PGU: prediction gap on important / unimportant features (Agarwal et al. 2022, OpenXAI).
* Fid+, Fid-, FidDelta (Amara et al. 2022, GraphFramEx) and their robust variants Fid_{a1,+},
  Fid_{a2,-} (Zheng et al. 2024, "Towards robust fidelity for evaluating explainability of GNNs").
* Deletion / insertion AUC (Petsiuk et al. 2018, RISE).
* Infidelity (Yeh et al. 2019, "On the (in)fidelity and sensitivity of explanations"), via captum.

Inputs ``x`` are ``(N, *shape)`` arrays or tensors; attributions are shaped like ``x``. A feature is
one element of ``x``; with ``pixel_level=True`` on images ``(N, C, H, W)``, one pixel (all its
channels at once); with ``groups`` (group labels, shared or one mask per sample: patches or
superpixels of :func:`components.perturbation.groups.group_labels`), one group. A pixel or
group is scored by the sum of its attributions and removed as a whole, so the metrics that remove
features cost the same number of model calls whatever the image size, and rank interpretable
features rather than single pixels. Features are removed only through
:func:`components.perturbation.removal.remove_features`; a :class:`Removal` says how (default:
replace by the zero baseline, the training mean of standardised inputs). Unless a ``target`` is
given, scores are about each sample's predicted class on the clean input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.metrics import infidelity as captum_infidelity
from torch import nn

from components.evaluation.predict import eval_mode, model_logits
from components.perturbation.groups import (
    as_labels,
    expand_groups,
    feature_groups,
    group_sums,
    num_groups,
)
from components.perturbation.removal import remove_features, rows_per_call, top_k_mask
from components.tensors import as_float_tensor, model_device

Target = int | Sequence[int] | np.ndarray | torch.Tensor | None
_BATCH = 512
_RANDOM = ("noise", "additive_noise")


@dataclass(frozen=True)
class Removal:
    """How removed features are replaced: the arguments of ``remove_features``, plus draws.

    Attributes:
        replacement: ``baseline`` (default: zeros unless ``baseline`` is set), ``mean``,
            ``noise`` (a fresh N(0, noise_std^2) value: a draw from the standardised marginal),
            ``blur``, or ``additive_noise`` (x + N(0, noise_std^2), OpenXAI's NormalPerturbation;
            passed to ``remove_features`` as a per-call baseline).
        baseline, mean, noise_std, blur_sigma: as in ``remove_features``.
        num_draws: random replacements (``noise``, ``additive_noise``) are averaged over this many
            draws; deterministic ones are computed once.
    """

    replacement: str = "baseline"
    baseline: float | torch.Tensor | None = None
    mean: torch.Tensor | None = None
    noise_std: float = 1.0
    blur_sigma: float = 1.0
    num_draws: int = 10

    @property
    def is_random(self) -> bool:
        return self.replacement in _RANDOM

    @property
    def draws(self) -> int:
        return self.num_draws if self.is_random else 1

    def apply(
        self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``x`` with the features where ``mask`` is 1 replaced."""
        if self.replacement == "additive_noise":
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            reference = x + self.noise_std * noise
            return remove_features(x, mask, replacement="baseline", baseline=reference)
        return remove_features(
            x,
            mask,
            replacement=self.replacement,
            baseline=self.baseline,
            mean=self.mean,
            noise_std=self.noise_std,
            blur_sigma=self.blur_sigma,
            generator=generator,
        )


# ---- shared helpers (also used by explanation_robustness / explanation_quality) ----


def mean_score(values: Any) -> float:
    """Mean of per-sample scores, ignoring NaN (undefined samples); ``nan`` if none is defined."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def as_attributions(attributions: Any, x: torch.Tensor, name: str = "attributions") -> torch.Tensor:
    """``attributions`` as a float tensor on ``x``'s device, checked to be shaped like ``x``."""
    if isinstance(attributions, torch.Tensor):
        attr = attributions.detach()
    else:
        attr = torch.as_tensor(np.array(attributions))
    attr = attr.to(device=x.device, dtype=x.dtype)
    if attr.shape != x.shape:
        raise ValueError(f"{name}: shape {tuple(attr.shape)} differs from x {tuple(x.shape)}")
    return attr


def model_scores(model: nn.Module, x: torch.Tensor, output: str = "prob") -> torch.Tensor:
    """``(N, C)`` softmax probabilities (``output="prob"``) or logits, eval mode, no grad, CPU."""
    if output not in ("prob", "logit"):
        raise ValueError(f"output must be 'prob' or 'logit', got {output!r}")
    device, chunks = model_device(model), []
    with eval_mode(model), torch.no_grad():
        for batch in x.split(rows_per_call(x.shape[1:], _BATCH, device)):
            logits = model_logits(model(batch.to(device))).float()
            chunks.append(logits.softmax(dim=1) if output == "prob" else logits)
    return torch.cat(chunks).cpu()


def resolve_target(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``(N,)`` class indices: ``target`` broadcast, or the predicted class when it is None."""
    if target is None:
        return model_scores(model, x, "logit").argmax(dim=1)
    targets = torch.as_tensor(np.asarray(target)).long().reshape(-1)
    if targets.numel() == 1:
        targets = targets.expand(len(x))
    if targets.shape != (len(x),):
        raise ValueError(f"target: expected an int or {len(x)} class indices, got {targets.shape}")
    return targets


def class_probability(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(N,)`` probability of each sample's target class."""
    return model_scores(model, x).gather(1, target.view(-1, 1)).squeeze(1)


def feature_labels(
    x: torch.Tensor, groups: Any = None, pixel_level: bool = False
) -> torch.Tensor | None:
    """The features the metrics rank and remove, as ``(1 or N, *shape)`` group labels.

    ``groups`` (labels broadcastable to one sample, or one mask per sample); else with
    ``pixel_level`` one group per pixel across channels; else None: every element on its own.
    """
    if groups is not None:
        return as_labels(groups, x.shape[1:], count=len(x)).to(x.device)
    if not pixel_level:
        return None
    if x.dim() != 4:
        raise ValueError(f"pixel_level needs (N, C, H, W) inputs, got {tuple(x.shape)}")
    return feature_groups(x.shape[1:], patch_size=1)[None].to(x.device)


def feature_scores(attributions: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """``(N, F)`` per-feature scores: the attributions, or their sum over each group."""
    if labels is None:
        return attributions.reshape(len(attributions), -1)
    return group_sums(attributions, labels)


def element_mask(mask: torch.Tensor, labels: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A per-feature ``(N, F)`` mask as a mask shaped like ``x`` (a group's elements share it)."""
    if labels is None:
        return mask.reshape(x.shape)
    return expand_groups(mask, labels)


def _top_k_features(attributions, x, k, labels) -> torch.Tensor:
    """``(N, F)`` 0/1: the top-``k`` features by ``|score|``."""
    return top_k_mask(feature_scores(as_attributions(attributions, x), labels), k)


def _average(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).mean(dim=0)


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().cpu().double().numpy()


# ---- PGI / PGU ----


def prediction_gap(
    model: nn.Module,
    x: Any,
    mask: Any,
    *,
    target: Target = None,
    removal: Removal | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Per-sample prediction gap ``E |f_c(x) - f_c(x')|`` when ``mask``'s features are removed.

    ``f_c`` is the softmax probability of the target class; the expectation runs over
    ``removal.draws`` draws of a random replacement (one evaluation for a deterministic one).
    """
    x = as_float_tensor(x)
    removal = removal or Removal()
    mask = torch.as_tensor(mask, dtype=x.dtype)
    target = resolve_target(model, x, target)
    clean = class_probability(model, x, target)
    generator = torch.Generator().manual_seed(seed)
    gaps = [
        (clean - class_probability(model, removal.apply(x, mask, generator), target)).abs()
        for _ in range(removal.draws)
    ]
    return _numpy(_average(gaps))


def pgi(
    model: nn.Module,
    x: Any,
    attributions: Any,
    k: int,
    *,
    target: Target = None,
    removal: Removal | None = None,
    pixel_level: bool = False,
    groups: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Prediction Gap on Important features (Agarwal et al. 2022, OpenXAI). Higher is better.

    ``PGI(x) = E |f_c(x) - f_c(x')|``, ``x'`` = ``x`` with its top-``k`` features by ``|attr|``
    removed. OpenXAI perturbs them with small additive Gaussian noise averaged over draws
    (``Removal("additive_noise", noise_std=...)``); here the default replaces them by the zero
    baseline, deterministic, as every other removal metric in sennflow.

    Returns:
        ``(N,)`` gaps in [0, 1].
    """
    x = as_float_tensor(x)
    labels = feature_labels(x, groups, pixel_level)
    mask = element_mask(_top_k_features(attributions, x, k, labels), labels, x)
    return prediction_gap(model, x, mask, target=target, removal=removal, seed=seed)


def pgu(
    model: nn.Module,
    x: Any,
    attributions: Any,
    k: int,
    *,
    target: Target = None,
    removal: Removal | None = None,
    pixel_level: bool = False,
    groups: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Prediction Gap on Unimportant features (Agarwal et al. 2022, OpenXAI). Lower is better.

    As :func:`pgi`, but removing all features *except* the top-``k`` (OpenXAI's inverted top-k
    mask), not only the bottom ``k``.
    """
    x = as_float_tensor(x)
    labels = feature_labels(x, groups, pixel_level)
    mask = element_mask(1.0 - _top_k_features(attributions, x, k, labels), labels, x)
    return prediction_gap(model, x, mask, target=target, removal=removal, seed=seed)


# ---- Fid+, Fid-, FidDelta and their robust variants ----


def explanation_mask(
    explanation: Any,
    x: Any,
    k: int | None = None,
    *,
    pixel_level: bool = False,
    groups: Any = None,
) -> torch.Tensor:
    """The ``(N, F)`` 0/1 mask of explanation features (pixels or groups with ``pixel_level`` /
    ``groups``): a score ``!= 0`` if ``k`` is None, else the top-k by ``|score|``."""
    x = as_float_tensor(x)
    labels = feature_labels(x, groups, pixel_level)
    scores = feature_scores(as_attributions(explanation, x, "explanation"), labels)
    return (scores != 0).to(x.dtype) if k is None else top_k_mask(scores, k)


def _fid_score(model: nn.Module, version: str) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """``score(x, target) -> (N,)``: target probability (``prob``) or correctness (``acc``)."""
    if version == "prob":
        return lambda x, t: class_probability(model, x, t)
    if version == "acc":
        return lambda x, t: (model_scores(model, x, "logit").argmax(dim=1) == t).double()
    raise ValueError(f"version must be 'prob' or 'acc', got {version!r}")


def _fid_result(plus: torch.Tensor, minus: torch.Tensor) -> dict[str, np.ndarray]:
    return {"fid_plus": _numpy(plus), "fid_minus": _numpy(minus), "fid_delta": _numpy(plus - minus)}


def fidelity(
    model: nn.Module,
    x: Any,
    explanation: Any,
    k: int | None = None,
    *,
    target: Target = None,
    version: str = "prob",
    removal: Removal | None = None,
    pixel_level: bool = False,
    groups: Any = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Fid+, Fid- and FidDelta per sample (Amara et al. 2022; notation of Zheng et al. 2024).

    With ``S`` the explanation (``explanation != 0``, or its top-``k`` features by ``|attr|``)
    and ``y`` the target class:

    * ``prob`` (default): ``Fid+ = f_y(x) - f_y(x without S)``, ``Fid- = f_y(x) - f_y(S only)``;
    * ``acc``: the same with ``1[argmax f(.) = y]`` in place of ``f_y(.)``;
    * ``FidDelta = Fid+ - Fid-``. Higher Fid+, lower Fid-, higher FidDelta are better.

    Signed, as in Zheng et al.'s code (no absolute value). "S only" removes the complement.

    Returns:
        ``{"fid_plus", "fid_minus", "fid_delta"}``, each ``(N,)``.
    """
    x = as_float_tensor(x)
    removal = removal or Removal()
    labels = feature_labels(x, groups, pixel_level)
    mask = explanation_mask(explanation, x, k, groups=labels)
    target = resolve_target(model, x, target)
    score = _fid_score(model, version)
    clean = score(x, target)
    generator = torch.Generator().manual_seed(seed)

    def removed(part: torch.Tensor) -> torch.Tensor:
        elements = element_mask(part, labels, x)
        return _average(
            [score(removal.apply(x, elements, generator), target) for _ in range(removal.draws)]
        )

    return _fid_result(clean - removed(mask), clean - removed(1.0 - mask))


def _expected_score(score, x, target, part, labels, prob, removal, num_samples, generator):
    """Mean score when each feature of ``part`` ``(N, F)`` is removed independently w.p.
    ``prob`` (a feature: an element, or a group of ``labels``)."""
    # A deterministic draw (prob 0 or 1, fixed replacement) needs one evaluation; this also makes
    # alpha1 = 1 / alpha2 = 0 reproduce plain Fid+ / Fid- bit for bit.
    draws = 1 if prob in (0.0, 1.0) and not removal.is_random else num_samples
    scores = []
    for _ in range(draws):
        coin = torch.bernoulli(torch.full(part.shape, float(prob)), generator=generator)
        removed = element_mask(part * coin.to(part), labels, x)
        scores.append(score(removal.apply(x, removed, generator), target))
    return _average(scores)


def robust_fidelity(
    model: nn.Module,
    x: Any,
    explanation: Any,
    k: int | None = None,
    *,
    alpha1: float = 0.1,
    alpha2: float = 0.9,
    num_samples: int = 50,
    target: Target = None,
    version: str = "prob",
    removal: Removal | None = None,
    pixel_level: bool = False,
    groups: Any = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Robust fidelity Fid_{a1,+}, Fid_{a2,-}, Fid_{a1,a2,Delta} (Zheng et al., ICLR 2024).

    Removing a whole explanation (or its whole complement) produces out-of-distribution inputs;
    Zheng et al. remove only a random part, averaged over ``num_samples`` draws:

    * ``Fid_{a1,+} = f_y(x) - E f_y(x without a random a1-share of S)``: each feature of ``S`` is
      removed independently with probability ``alpha1``;
    * ``Fid_{a2,-} = f_y(x) - E f_y(S plus a random a2-share of the complement)``: each
      complement feature is *kept* with probability ``alpha2`` (removed with ``1 - alpha2``);
    * ``Delta = Fid_{a1,+} - Fid_{a2,-}``; ``version="acc"`` uses correctness as in
      :func:`fidelity`.

    ``alpha1 = 1, alpha2 = 0`` is plain :func:`fidelity`. Defaults ``0.1, 0.9, 50`` are the
    paper's. Returns the same keys as :func:`fidelity`.
    """
    if not (0.0 <= alpha1 <= 1.0 and 0.0 <= alpha2 <= 1.0):
        raise ValueError(f"alpha1 and alpha2 must lie in [0, 1], got {alpha1}, {alpha2}")
    x = as_float_tensor(x)
    removal = removal or Removal()
    labels = feature_labels(x, groups, pixel_level)
    mask = explanation_mask(explanation, x, k, groups=labels)
    target = resolve_target(model, x, target)
    score = _fid_score(model, version)
    clean = score(x, target)
    generator = torch.Generator().manual_seed(seed)
    args = (score, x, target)
    draws = (removal, num_samples, generator)
    plus = clean - _expected_score(*args, mask, labels, alpha1, *draws)
    minus = clean - _expected_score(*args, 1.0 - mask, labels, 1.0 - alpha2, *draws)
    return _fid_result(plus, minus)


# ---- deletion / insertion (RISE) ----


def _ranks(scores: torch.Tensor, absolute: bool, valid: torch.Tensor | None) -> torch.Tensor:
    """Per sample, each feature's position in decreasing order of attribution (0 = first);
    features outside ``valid`` (groups a sample does not have) come last."""
    flat = scores.reshape(len(scores), -1)
    flat = flat.abs() if absolute else flat
    if valid is not None:
        flat = flat.masked_fill(~valid, -torch.inf)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions).reshape(scores.shape)


def _removal_curve(
    model, x, attributions, *, insert, steps, target, removal, absolute, pixel_level, groups, seed
) -> np.ndarray:
    x = as_float_tensor(x)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    removal = removal or Removal()
    labels = feature_labels(x, groups, pixel_level)
    scores = feature_scores(as_attributions(attributions, x), labels)
    # per sample its own number of groups (superpixels): the groups it lacks are ranked last
    counts = _feature_counts(x, labels)
    features = torch.arange(scores.shape[1], device=scores.device)
    valid = None if labels is None else features < counts.to(scores.device)[:, None]
    ranks = _ranks(scores, absolute, valid)
    target = resolve_target(model, x, target)
    curve = []
    for step in range(steps + 1):
        shown = torch.round(step * counts / steps)[:, None]
        # deletion removes the first `shown` features; insertion removes all but them
        mask = (ranks >= shown) if insert else (ranks < shown)
        # re-seeding keeps one fixed random reference along the curve
        generator = torch.Generator().manual_seed(seed)
        removed = removal.apply(x, element_mask(mask.to(x.dtype), labels, x), generator)
        curve.append(class_probability(model, removed, target))
    return _numpy(torch.stack(curve, dim=1))


def _feature_counts(x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """``(N,)`` float: how many features each sample has (elements, or its groups)."""
    if labels is None:
        return torch.full((len(x),), float(x[0].numel()))
    counts = labels.reshape(len(labels), -1).max(1).values + 1
    return counts.to(torch.float64).expand(len(x))


def deletion_curve(
    model: nn.Module,
    x: Any,
    attributions: Any,
    *,
    steps: int = 20,
    target: Target = None,
    removal: Removal | None = None,
    absolute: bool = False,
    pixel_level: bool = False,
    groups: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Target probability as features are removed in decreasing order of attribution (RISE).

    Step ``s`` of ``steps`` removes the first ``round(s * d / steps)`` of the ``d`` features
    (elements, pixels or groups: ``steps + 1`` model calls per sample whatever ``d``), ordered by
    signed attribution (``absolute=True``: by ``|attr|``); ties keep feature order. A random
    replacement uses one fixed draw along the curve.

    Returns:
        ``(N, steps + 1)`` probabilities; column 0 is the clean input.
    """
    options = {"steps": steps, "target": target, "removal": removal, "absolute": absolute}
    labels = {"pixel_level": pixel_level, "groups": groups}
    return _removal_curve(model, x, attributions, insert=False, seed=seed, **options, **labels)


def insertion_curve(
    model: nn.Module,
    x: Any,
    attributions: Any,
    *,
    steps: int = 20,
    target: Target = None,
    removal: Removal | None = None,
    absolute: bool = False,
    pixel_level: bool = False,
    groups: Any = None,
    seed: int = 0,
) -> np.ndarray:
    """Target probability as features are inserted into the fully removed input (RISE).

    Starts from every feature removed (RISE: a blurred canvas, ``Removal("blur")``; default here:
    the zero baseline) and restores them in decreasing order of attribution.

    Returns:
        ``(N, steps + 1)`` probabilities; the last column is the clean input.
    """
    options = {"steps": steps, "target": target, "removal": removal, "absolute": absolute}
    labels = {"pixel_level": pixel_level, "groups": groups}
    return _removal_curve(model, x, attributions, insert=True, seed=seed, **options, **labels)


def curve_auc(curve: np.ndarray) -> np.ndarray:
    """Trapezoid area under ``(N, steps + 1)`` curves over the normalised x-axis [0, 1]."""
    return np.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), axis=1)


def deletion_auc(model: nn.Module, x: Any, attributions: Any, **kwargs: Any) -> np.ndarray:
    """Per-sample area under :func:`deletion_curve` (Petsiuk et al. 2018). Lower is better."""
    return curve_auc(deletion_curve(model, x, attributions, **kwargs))


def insertion_auc(model: nn.Module, x: Any, attributions: Any, **kwargs: Any) -> np.ndarray:
    """Per-sample area under :func:`insertion_curve` (Petsiuk et al. 2018). Higher is better."""
    return curve_auc(insertion_curve(model, x, attributions, **kwargs))


# ---- infidelity (Yeh et al. 2019) ----


def gaussian_perturbation(noise_std: float, generator: torch.Generator) -> Callable:
    """captum ``perturb_func``: ``I ~ N(0, noise_std^2)``, perturbed input ``x - I``."""

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype)
        noise = noise.to(inputs.device) * noise_std
        return noise, inputs - noise

    return perturb


def removal_perturbation(
    removal: Removal,
    subset_prob: float,
    generator: torch.Generator,
    labels: torch.Tensor | None = None,
):
    """captum ``perturb_func``: a random subset (each feature w.p. ``subset_prob``) is removed.

    The perturbation handed to captum is the binary subset mask, so ``I . attr`` sums the
    attributions of the removed features (Yeh et al.'s removal perturbation; sensitivity-n).
    With ``labels`` (``(1 or N, *shape)``) a feature is a group, removed as a whole; per-sample
    labels follow captum's layout of the perturbed batch (each input repeated in turn).
    """

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if labels is None:
            mask = torch.bernoulli(torch.full(inputs.shape, subset_prob), generator=generator)
        else:
            rows = _repeated_labels(labels, len(inputs))
            coins = torch.full((len(inputs), num_groups(rows)), subset_prob)
            mask = expand_groups(torch.bernoulli(coins, generator=generator), rows.cpu())
        mask = mask.to(device=inputs.device, dtype=inputs.dtype)
        return mask, removal.apply(inputs, mask, generator)

    return perturb


def _repeated_labels(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Per-sample labels repeated for captum's ``count`` perturbed rows (``repeat_interleave``)."""
    if len(labels) == 1:
        return labels
    if count % len(labels):
        raise ValueError(f"{count} perturbed rows do not repeat {len(labels)} per-sample groups")
    return labels.repeat_interleave(count // len(labels), dim=0)


def infidelity(
    model: nn.Module,
    x: Any,
    attributions: Any,
    *,
    target: Target = None,
    perturbation: str = "removal",
    noise_std: float = 0.1,
    subset_prob: float = 0.5,
    removal: Removal | None = None,
    n_perturb_samples: int = 10,
    normalize: bool = False,
    output: str = "logit",
    groups: Any = None,
    seed: int = 0,
    max_examples_per_batch: int | None = None,
) -> np.ndarray:
    """Explanation infidelity (Yeh et al. 2019), captum's ``infidelity``. Lower is better.

    ``INFD = E_I[(I . attr - (f(x) - f(x - I)))^2]`` with ``f`` the target logit (``output``),
    estimated over ``n_perturb_samples`` draws of ``I``:

    * ``removal`` (default): a random subset removed through ``removal`` (default zero baseline),
      ``I`` its 0/1 mask; for attributions that sum to an output difference (IG, gradient x
      input, SHAP, LIME, occlusion);
    * ``gaussian``: ``I ~ N(0, noise_std^2)``; for local attributions (gradients, SmoothGrad).

    ``groups`` (``removal`` only; see the module docstring) removes random subsets of groups
    instead of elements; per-sample groups need ``max_examples_per_batch=None``.
    ``normalize`` rescales the attributions optimally first (captum's ``normalize``). A
    ``removal.baseline`` tensor must be one sample, not one per sample (captum repeats inputs).

    Returns:
        ``(N,)`` infidelity.
    """
    if output not in ("prob", "logit"):
        raise ValueError(f"output must be 'prob' or 'logit', got {output!r}")
    x = as_float_tensor(x)
    device = model_device(model)
    x, attr = x.to(device), as_attributions(attributions, x.to(device))
    target = resolve_target(model, x, target).to(device)
    generator = torch.Generator().manual_seed(seed)
    if perturbation == "gaussian":
        perturb = gaussian_perturbation(noise_std, generator)
    elif perturbation == "removal":
        labels = feature_labels(x, groups)
        perturb = removal_perturbation(removal or Removal(), subset_prob, generator, labels)
    else:
        raise ValueError(f"perturbation must be 'removal' or 'gaussian', got {perturbation!r}")

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        logits = model_logits(model(inputs))
        return logits.softmax(dim=1) if output == "prob" else logits

    with eval_mode(model):
        values = captum_infidelity(
            forward,
            perturb,
            x,
            attr,
            target=target,
            n_perturb_samples=n_perturb_samples,
            max_examples_per_batch=max_examples_per_batch,
            normalize=normalize,
        )
    return _numpy(values)
