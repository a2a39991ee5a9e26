"""Local function approximation (LFA): the one explainer behind eight post-hoc methods.

Han, Srinivas & Lakkaraju (2022), "Which Explanation Should I Choose? A Function Approximation
Perspective to Characterizing Post Hoc Explanations": LIME, C-LIME, KernelSHAP, Occlusion,
Vanilla Gradients, Gradient x Input, SmoothGrad and Integrated Gradients all return the linear
model ``g(xi) = c + w . xi`` that best approximates the black box ``f`` over a neighbourhood of
``x``; they differ only in the neighbourhood and the loss (the paper's Table 1). Here ``xi`` is the
interpretable representation: one coordinate per feature group (``feature_mask``: patches,
superpixels or single features, see
:func:`~components.perturbation.groups.group_labels`). A group's coefficient is spread evenly
over its elements, so the attributions of a group sum to its coefficient: sums over groups are
comparable with pixel-level methods (gradient x input, IG) and KernelSHAP's attributions still add
up to ``f(x) - f(baseline)`` in input space. With one feature per group (the default on small
inputs) every element carries its own coefficient.

====================  ============================================  =================  ===========
method                neighbourhood                                 loss               kernel
====================  ============================================  =================  ===========
C-LIME                gaussian: ``x + sigma xi``, xi ~ N(0, I)      squared            uniform
LIME                  binary: random subsets of groups removed      squared            exponential
KernelSHAP            binary                                        squared            shapley
Occlusion             single_removal: one group removed at a time   squared            any
SmoothGrad            gaussian                                      gradient_matching  uniform
Vanilla Gradients     gaussian with ``sigma = 0``                   gradient_matching  -
Integrated Gradients  path: ``b + alpha (x - b)``, alpha ~ U(0, 1)  gradient_matching  uniform
Gradient x Input      path at ``alpha = 1`` with ``b = 0``          gradient_matching  -
====================  ============================================  =================  ===========

Gradient x Input (the multiplicative neighbourhood ``x * xi`` shrunk onto ``xi = 1``) is listed
for completeness; :func:`components.explain.posthoc.methods.attribute` computes it with captum.

Losses: ``squared`` is weighted least squares ``sum_k pi_k (f(z_k) - g(xi_k))^2``;
``gradient_matching`` is ``sum_k pi_k ||grad_xi f(z(xi_k)) - w||^2``, whose minimiser is the
weighted mean gradient. ``single_removal`` has one sample per group plus ``x`` itself, so the
squared loss interpolates exactly and its solution, ``f(x) - f(x without group j)``, is computed in
closed form: that is Occlusion.

Kernels (sample weights ``pi``): ``uniform``; ``exponential``, LIME's
``exp(-d^2 / (2 width^2))`` with ``d`` the cosine distance of ``xi`` to the all-ones vector
(binary; width 0.25, lime_image's default) or ``||xi||`` (gaussian; width ``0.75 sqrt(G)``,
lime_tabular's default); ``shapley``, ``(G - 1) / (C(G, |s|) |s| (G - |s|))`` (Lundberg & Lee 2017),
importance-sampled as in KernelSHAP: subset sizes are drawn proportionally to the kernel and
weighted uniformly, and the empty and full subsets get a (practically) infinite weight so the
attributions add up to ``f(x) - f(baseline)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from components.explain.integrated_gradients import resolve_baseline
from components.perturbation.groups import as_labels, group_sums, num_groups, spread_groups
from components.perturbation.removal import remove_features
from components.tensors import as_float_tensor

NEIGHBOURHOODS = ("gaussian", "binary", "single_removal", "path")
LOSSES = ("squared", "gradient_matching")
KERNELS = ("uniform", "exponential", "shapley")
_COMBINATIONS = {
    ("gaussian", "squared"): ("uniform", "exponential"),
    ("gaussian", "gradient_matching"): ("uniform", "exponential"),
    ("binary", "squared"): KERNELS,
    ("single_removal", "squared"): KERNELS,
    ("path", "gradient_matching"): ("uniform",),
}
_ANCHOR_WEIGHT = 1e6  # KernelSHAP's "infinite" weight on the empty and full coalitions
_NOISE_LEVEL = 0.15  # SmoothGrad's recommended noise: 10-20% of the input range

Forward = Callable[[torch.Tensor], torch.Tensor]


def local_explanation(
    f: Forward,
    x: Any,
    *,
    neighbourhood: str,
    loss: str = "squared",
    kernel: str = "uniform",
    num_samples: int = 512,
    target: Any = None,
    feature_mask: Any = None,
    sigma: float | None = None,
    kernel_width: float | None = None,
    baseline: Any = None,
    removal: Mapping[str, Any] | None = None,
    ridge: float = 1e-9,
    batch_size: int = 4096,
    seed: int = 0,
) -> np.ndarray:
    """The linear model that approximates ``f`` around each ``x`` (Han et al. 2022, LFA).

    Args:
        f: Maps a batch ``(M, *shape)`` to outputs ``(M,)``, or ``(M, C)`` with ``target`` given.
        x: Inputs ``(N, *shape)``, on ``f``'s device.
        neighbourhood: One of :data:`NEIGHBOURHOODS` (see the module docstring).
        loss: ``squared`` or ``gradient_matching``.
        kernel: Sample weights: ``uniform``, ``exponential`` (LIME) or ``shapley`` (KernelSHAP).
        num_samples: Neighbours per input (``single_removal``: ignored; one per group).
        target: Output column explained when ``f`` returns ``(M, C)``: an int or one per input.
        feature_mask: Integer group label per feature, broadcastable to ``shape``, or one such
            mask per input ``(N, *shape)`` (e.g. superpixels); default
            :func:`~components.perturbation.groups.feature_groups`.
        sigma: ``gaussian``: noise std; default :func:`default_sigma` of ``x``.
        kernel_width: ``exponential`` kernel width; defaults in the module docstring.
        baseline: ``binary``/``single_removal``: the removal reference; ``path``: the path start
            (scalar, one sample or one per input; default zeros).
        removal: Extra :func:`~components.perturbation.removal.remove_features` arguments
            (``replacement``, ``mean``, ``noise_std``, ``blur_sigma``).
        ridge: Relative ridge added to the least-squares normal equations for stability.
        batch_size: Rows per call of ``f``.
        seed: Seeds the neighbours: the same ``seed`` and ``batch_size`` give the same result.

    Returns:
        Attributions shaped like ``x``: each group's coefficient spread evenly over its elements.
    """
    _check(neighbourhood, loss, kernel, num_samples, batch_size)
    inputs = as_float_tensor(x)
    labels = as_labels(feature_mask, inputs.shape[1:], count=len(inputs)).to(inputs.device)
    targets = _resolve_target(target, len(inputs), inputs.device)
    base = resolve_baseline(inputs, baseline)
    if neighbourhood == "single_removal":
        return occlusion(
            f,
            inputs,
            target=targets,
            feature_mask=labels,
            baseline=base,
            removal=removal,
            batch_size=batch_size,
            seed=seed,
        )
    setup = _Setup(f, inputs, targets, labels, base, dict(removal or {}), batch_size, seed)
    setup.configure(neighbourhood, loss, kernel, num_samples, sigma, kernel_width, ridge)
    pieces = [
        spread_groups(setup.fit(rows), setup.labels(rows))
        for rows in _chunks(len(inputs), setup.per_chunk)
    ]
    return torch.cat(pieces).reshape(inputs.shape).detach().cpu().numpy()


def c_lime(
    f: Forward,
    x: Any,
    *,
    target: Any = None,
    num_samples: int = 512,
    sigma: float | None = None,
    feature_mask: Any = None,
    batch_size: int = 4096,
    seed: int = 0,
) -> np.ndarray:
    """C-LIME: least squares over a Gaussian neighbourhood with uniform weights.

    The continuous LIME of Agarwal et al. (2021), "Towards the Unification and Robustness of
    Perturbation and Gradient Based Explanations"; in Han et al.'s (2022) LFA it is the
    ``gaussian`` neighbourhood with the ``squared`` loss. On a linear model it returns the
    weights; in expectation it equals SmoothGrad with the same ``sigma``.
    """
    return local_explanation(
        f,
        x,
        neighbourhood="gaussian",
        loss="squared",
        kernel="uniform",
        num_samples=num_samples,
        target=target,
        feature_mask=feature_mask,
        sigma=sigma,
        batch_size=batch_size,
        seed=seed,
    )


def occlusion(
    f: Forward,
    x: Any,
    *,
    target: Any = None,
    windows: torch.Tensor | None = None,
    feature_mask: Any = None,
    baseline: Any = None,
    removal: Mapping[str, Any] | None = None,
    batch_size: int = 4096,
    seed: int = 0,
) -> np.ndarray:
    """Occlusion (Zeiler & Fergus 2014): the drop in output when a window or group is removed.

    With ``windows``, each element's attribution is the mean of ``f(x) - f(x with the window
    removed)`` over the windows that cover it (captum's Occlusion). Without, each group of
    ``feature_mask`` is removed in turn (:func:`group_occlusion`) and its drop spread evenly
    over its elements. Removal goes through
    :func:`~components.perturbation.removal.remove_features`; every (input, window) pair is one row
    of a batched call of ``f``.

    Args:
        f, x, target, baseline, removal, batch_size: As for :func:`local_explanation`.
        windows: ``(W, *shape)`` 0/1 masks, e.g. from :func:`sliding_windows`.
        feature_mask: Groups used when ``windows`` is None (see :func:`local_explanation`).
        seed: Seeds ``noise`` removal.

    Returns:
        Attributions shaped like ``x``.
    """
    inputs = as_float_tensor(x)
    if windows is None:
        labels = as_labels(feature_mask, inputs.shape[1:], count=len(inputs)).to(inputs.device)
        drops = group_occlusion(
            f,
            inputs,
            labels,
            target=target,
            baseline=baseline,
            removal=removal,
            batch_size=batch_size,
            seed=seed,
        )
        return spread_groups(drops, labels).reshape(inputs.shape).cpu().numpy()
    shape = inputs.shape[1:]
    masks = windows.to(inputs).reshape(-1, *shape)
    run = _Removals(f, inputs, target, baseline, removal, batch_size, seed)
    total = torch.zeros(len(inputs), shape.numel(), dtype=inputs.dtype, device=inputs.device)
    flat = masks.flatten(1)
    pairs = torch.arange(len(inputs) * len(masks), device=inputs.device)
    rows, cols = pairs // len(masks), pairs % len(masks)
    for chunk in _chunks(len(pairs), batch_size):
        chunk = chunk.to(inputs.device)
        drop = run.drops(rows[chunk], masks[cols[chunk]])
        total.index_add_(0, rows[chunk], drop[:, None] * flat[cols[chunk]])
    counts = flat.sum(0).clamp(min=1)
    return (total / counts).reshape(inputs.shape).cpu().numpy()


def group_occlusion(
    f: Forward,
    x: Any,
    labels: torch.Tensor,
    *,
    target: Any = None,
    baseline: Any = None,
    removal: Mapping[str, Any] | None = None,
    batch_size: int = 4096,
    seed: int = 0,
) -> torch.Tensor:
    """``f(x) - f(x without group g)`` for every input and group: ``(N, G)``.

    One model call per (input, group) pair, ``batch_size`` pairs per call: the cost is the
    number of groups, not of features. Groups an input does not have (per-input labels with
    fewer segments) are not evaluated and read 0.

    Args:
        f, x, target, baseline, removal, batch_size, seed: As for :func:`occlusion`.
        labels: ``(1 or N, *shape)`` contiguous group labels
            (:func:`~components.perturbation.groups.as_labels`).
    """
    inputs = as_float_tensor(x)
    labels = labels.to(inputs.device).reshape(len(labels), -1)
    counts = (labels.max(1).values + 1).expand(len(inputs))
    rows = torch.repeat_interleave(torch.arange(len(inputs), device=inputs.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    groups = torch.arange(len(rows), device=inputs.device) - starts[rows]
    run = _Removals(f, inputs, target, baseline, removal, batch_size, seed)
    drops = torch.zeros(len(inputs), int(counts.max()), dtype=inputs.dtype, device=inputs.device)
    for chunk in _chunks(len(rows), batch_size):
        chunk = chunk.to(inputs.device)
        row, group = rows[chunk], groups[chunk]
        mask = labels[row if len(labels) > 1 else torch.zeros_like(row)] == group[:, None]
        drops[row, group] = run.drops(row, mask.reshape(len(row), *inputs.shape[1:]))
    return drops


class _Removals:
    """``f(x) - f(x with a mask removed)`` for batches of (input row, mask) pairs."""

    def __init__(self, f, inputs, target, baseline, removal, batch_size, seed) -> None:
        self.f, self.inputs, self.batch_size = f, inputs, batch_size
        self.targets = _resolve_target(target, len(inputs), inputs.device)
        self.base = resolve_baseline(inputs, baseline)
        self.removal = dict(removal or {})
        self.generator = torch.Generator().manual_seed(seed)
        self.full = _evaluate(f, inputs, self.targets, batch_size)

    def drops(self, rows: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        removed = remove_features(
            self.inputs[rows],
            masks,
            baseline=self.base[rows],
            generator=self.generator,
            **self.removal,
        )
        targets = _take(self.targets, rows)
        return self.full[rows] - _evaluate(self.f, removed, targets, self.batch_size)


def sliding_windows(
    feature_shape: Sequence[int], window: Sequence[int], stride: Sequence[int] | None = None
) -> torch.Tensor:
    """``(W, *feature_shape)`` masks of a window slid over the features (captum's Occlusion).

    ``stride`` (at most ``window``, default ``window``: no overlap) steps the window from 0 until
    it reaches the far edge; the last window is cropped there, as in captum.
    """
    shape = tuple(int(s) for s in feature_shape)
    window = tuple(int(w) for w in window)
    stride = tuple(int(s) for s in stride) if stride is not None else window
    if not len(window) == len(stride) == len(shape):
        raise ValueError(f"window {window} and stride {stride} need one entry per dim of {shape}")
    if any(not 1 <= w <= s for w, s in zip(window, shape, strict=True)):
        raise ValueError(f"window {window} must fit {shape}")
    if any(not 1 <= st <= w for st, w in zip(stride, window, strict=True)):
        raise ValueError(f"stride {stride} must lie in [1, window {window}]")
    starts = [_window_starts(s, w, st) for s, w, st in zip(shape, window, stride, strict=True)]
    masks = []
    for corner in itertools.product(*starts):
        mask = torch.zeros(shape)
        mask[tuple(slice(c, c + w) for c, w in zip(corner, window, strict=True))] = 1.0
        masks.append(mask)
    return torch.stack(masks)


def default_sigma(x: torch.Tensor) -> float:
    """SmoothGrad's noise level (Smilkov et al. 2017): 15% of the value range of ``x``."""
    spread = float(x.max() - x.min()) if x.numel() else 0.0
    return _NOISE_LEVEL * spread if spread > 0 else _NOISE_LEVEL


class _Setup:
    """One LFA problem: draws the inputs' neighbours, evaluates ``f`` and fits ``g``."""

    def __init__(self, f, inputs, targets, labels, base, removal, batch_size, seed) -> None:
        self.f, self.inputs, self.targets, self.base = f, inputs, targets, base
        self.all_labels = labels.reshape(len(labels), -1)  # (1 or N, D)
        self.removal, self.batch_size, self.seed = removal, batch_size, seed

    def configure(self, neighbourhood, loss, kernel, num_samples, sigma, kernel_width, ridge):
        self.neighbourhood, self.loss, self.kernel, self.ridge = neighbourhood, loss, kernel, ridge
        self.sigma = default_sigma(self.inputs) if sigma is None else float(sigma)
        if self.sigma < 0 or (self.sigma == 0 and loss == "squared"):
            raise ValueError(f"sigma must be > 0 (>= 0 for gradient matching), got {sigma}")
        # sigma = 0 collapses the neighbourhood onto x: one sample is the exact answer.
        self.samples = 1 if neighbourhood == "gaussian" and self.sigma == 0 else num_samples
        self.kernel_width = kernel_width
        # Per-input groups (superpixels) differ in number: one input per problem then.
        shared = len(self.all_labels) == 1
        self.per_chunk = max(1, self.batch_size // self.samples) if shared else 1

    def labels(self, rows: torch.Tensor) -> torch.Tensor:
        """The group labels ``(1 or len(rows), D)`` of the inputs ``rows``."""
        if len(self.all_labels) == 1:
            return self.all_labels
        return self.all_labels[rows.to(self.all_labels.device)]

    def fit(self, rows: torch.Tensor) -> torch.Tensor:
        """Coefficients ``(len(rows), G)`` for the inputs ``rows``."""
        labels = self.labels(rows)
        count = num_groups(labels)
        self.width = self.kernel_width or _default_width(self.neighbourhood, count)
        state = np.random.SeedSequence([self.seed, int(rows[0])]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        design, weights = self._draw(len(rows), count, generator)
        design, weights = design.to(self.inputs), weights.to(self.inputs)  # (n, S, G), (n, S)
        points = self._points(rows, design, labels, generator)  # (n * S, *shape)
        targets = _take(self.targets, rows.repeat_interleave(self.samples))
        if self.loss == "gradient_matching":
            grads = self._group_gradients(rows, points, targets, labels).reshape(*design.shape)
            return (grads * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
        outputs = _evaluate(self.f, points, targets, self.batch_size).reshape(weights.shape)
        return _weighted_least_squares(design, outputs, weights, self.ridge)

    def _draw(self, count: int, groups: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbours ``(count, S, G)`` of ``count`` inputs, and their weights ``(count, S)``."""
        shape = (count, self.samples, groups)
        if self.neighbourhood == "gaussian":
            design = self.sigma * torch.randn(shape, generator=generator)
            return design, self._weights(design / max(self.sigma, 1e-12))
        if self.neighbourhood == "path":
            # Stratified: one alpha in each of S equal slices of [0, 1].
            alphas = (torch.arange(shape[1]) + torch.rand(shape[:2], generator=generator)) / shape[
                1
            ]
            return alphas[..., None].expand(shape), torch.ones(shape[:2])
        if self.kernel == "shapley":
            return _shapley_subsets(shape, generator)
        subsets = (torch.rand(shape, generator=generator) < 0.5).float()
        return subsets, self._weights(subsets)

    def _weights(self, design: torch.Tensor) -> torch.Tensor:
        if self.kernel == "uniform":
            return torch.ones(design.shape[:2])
        if self.neighbourhood == "gaussian":
            distance = design.norm(dim=2)
        else:  # cosine distance of a binary vector to the all-ones vector
            distance = 1 - (design.sum(2) / design.shape[2]).sqrt()
        return torch.exp(-(distance**2) / (2 * self.width**2))

    def _points(self, rows, design, labels, generator) -> torch.Tensor:
        """The neighbours in input space, ``(n * S, *shape)``."""
        shape = self.inputs.shape[1:]
        x = self.inputs[rows].repeat_interleave(self.samples, dim=0)
        base = self.base[rows].repeat_interleave(self.samples, dim=0)
        index = labels[:, None, :].expand(*design.shape[:2], labels.shape[1])
        spread = design.gather(2, index).reshape(-1, *shape)  # (n * S, *shape)
        if self.neighbourhood == "gaussian":
            return x + spread
        if self.neighbourhood == "path":
            return base + spread * (x - base)
        return remove_features(x, 1 - spread, baseline=base, generator=generator, **self.removal)

    def _group_gradients(self, rows, points, targets, labels) -> torch.Tensor:
        """``grad_xi f``: the input gradient summed over each group (times ``x - b`` on a path)."""
        grads = _gradients(self.f, points, targets, self.batch_size).flatten(1)
        if self.neighbourhood == "path":
            span = (self.inputs[rows] - self.base[rows]).flatten(1)
            grads = grads * span.repeat_interleave(self.samples, dim=0)
        per_point = labels if len(labels) == 1 else labels.repeat_interleave(self.samples, dim=0)
        return group_sums(grads, per_point)


def _shapley_subsets(shape, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """KernelSHAP's subsets ``(n, S, G)``: full and empty first, then sizes from the kernel."""
    count, samples, size = shape
    anchors = torch.tensor([1.0, 0.0]).repeat(samples)[:samples]  # full, empty, full, ...
    subsets = anchors[None, :, None].expand(shape).clone()
    weights = torch.full(shape[:2], _ANCHOR_WEIGHT)
    drawn = samples - 2
    if size >= 2 and drawn > 0:  # one feature has no proper subsets: only anchors then
        sizes = torch.arange(1, size)
        probabilities = (size - 1) / (sizes * (size - sizes)).double()
        picks = torch.multinomial(
            probabilities, count * drawn, replacement=True, generator=generator
        )
        ranks = torch.rand(count, drawn, size, generator=generator).argsort(2).argsort(2)
        subsets[:, 2:] = (ranks < sizes[picks].reshape(count, drawn, 1)).float()
        weights[:, 2:] = 1.0
    return subsets, weights


def _weighted_least_squares(design, outputs, weights, ridge) -> torch.Tensor:
    """Per input, the slopes of ``outputs ~ c + design . w`` under ``weights`` (batched)."""
    design, outputs, weights = design.double(), outputs.double(), weights.double()
    weights = weights / weights.sum(1, keepdim=True)
    ones = torch.ones_like(design[..., :1])
    features = torch.cat([ones, design], dim=2)  # (n, S, G + 1)
    weighted = features * weights[..., None]
    normal = weighted.transpose(1, 2) @ features
    scale = normal.diagonal(dim1=1, dim2=2)[:, 1:].mean(1).clamp(min=1e-12)
    penalty = torch.eye(normal.shape[1], dtype=normal.dtype, device=normal.device)
    penalty[0, 0] = 0  # no shrinkage on the intercept
    normal = normal + ridge * scale[:, None, None] * penalty
    solution = torch.linalg.solve(normal, weighted.transpose(1, 2) @ outputs[..., None])
    return solution[:, 1:, 0].float()


def _evaluate(f: Forward, z: torch.Tensor, targets, batch_size: int) -> torch.Tensor:
    """``f``'s explained output for every row of ``z``, ``(M,)``, without gradients."""
    with torch.no_grad():
        pieces = [_select(f(chunk), _take(targets, rows)) for rows, chunk in _slices(z, batch_size)]
    return torch.cat(pieces).float()


def _gradients(f: Forward, z: torch.Tensor, targets, batch_size: int) -> torch.Tensor:
    """The gradient of ``f``'s explained output with respect to each row of ``z``."""
    pieces = []
    with torch.enable_grad():
        for rows, chunk in _slices(z, batch_size):
            point = chunk.detach().requires_grad_(True)
            output = _select(f(point), _take(targets, rows))
            (grad,) = torch.autograd.grad(output.sum(), point)
            pieces.append(grad)
    return torch.cat(pieces)


def _select(output: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    if output.dim() == 1:
        return output
    if targets is None:
        raise ValueError(f"f returned shape {tuple(output.shape)}: give target to pick a column")
    return output.gather(1, targets[:, None])[:, 0]


def _resolve_target(target: Any, count: int, device: torch.device) -> torch.Tensor | None:
    if target is None:
        return None
    targets = torch.as_tensor(np.asarray(target.cpu() if torch.is_tensor(target) else target))
    targets = targets.long().to(device)
    if targets.dim() == 0:
        targets = targets.expand(count)
    if targets.shape != (count,):
        raise ValueError(f"target: expected an int or {count} indices, got {tuple(targets.shape)}")
    return targets


def _take(targets: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if targets is None else targets[rows.to(targets.device)]


def _slices(z: torch.Tensor, size: int):
    for rows in _chunks(len(z), size):
        yield rows, z[rows.to(z.device)]


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield torch.arange(start, min(start + size, total))


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


def _default_width(neighbourhood: str, groups: int) -> float:
    return 0.75 * math.sqrt(groups) if neighbourhood == "gaussian" else 0.25


def _check(neighbourhood: str, loss: str, kernel: str, num_samples: int, batch_size: int) -> None:
    for name, value, allowed in (
        ("neighbourhood", neighbourhood, NEIGHBOURHOODS),
        ("loss", loss, LOSSES),
        ("kernel", kernel, KERNELS),
    ):
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; one of {allowed}")
    kernels = _COMBINATIONS.get((neighbourhood, loss))
    if kernels is None:
        raise ValueError(
            f"the {neighbourhood} neighbourhood has no {loss} loss; "
            f"combinations: {sorted(_COMBINATIONS)}"
        )
    if kernel not in kernels:
        raise ValueError(f"kernel {kernel!r} does not apply to {neighbourhood}; one of {kernels}")
    if num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}"
        )
