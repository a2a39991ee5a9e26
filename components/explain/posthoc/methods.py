"""Eight post-hoc attribution methods behind one function.

Han, Srinivas & Lakkaraju (2022), "Which Explanation Should I Choose? A Function Approximation
Perspective to Characterizing Post Hoc Explanations", show that these eight methods are all local
function approximation of the model, differing in neighbourhood and loss (see
:mod:`components.explain.posthoc.lfa`). Each explains one logit per sample:

* ``lime``: LIME (Ribeiro et al. 2016, "Why Should I Trust You?"), captum's ``Lime``: random
  subsets of the interpretable features kept, the rest removed, a Lasso fitted under an
  exponential cosine kernel.
* ``c_lime``: continuous LIME (Agarwal et al. 2021): least squares over ``x + N(0, sigma^2)``.
* ``kernel_shap``: KernelSHAP (Lundberg & Lee 2017), captum's ``KernelShap``.
* ``occlusion``: Occlusion (Zeiler & Fergus 2014), each window removed in turn.
* ``gradients``: vanilla gradients (Simonyan et al. 2014), signed; captum's ``Saliency``.
* ``gradient_x_input``: gradient times input (Shrikumar et al. 2016); captum's ``InputXGradient``.
* ``smoothgrad``: SmoothGrad (Smilkov et al. 2017), gradients averaged over Gaussian noise;
  captum's ``NoiseTunnel`` over ``Saliency``.
* ``ig``: Integrated Gradients (Sundararajan et al. 2017); captum's ``IntegratedGradients``.

Every method that removes features does it through
:func:`components.perturbation.removal.remove_features` (captum's LIME / KernelSHAP transforms are
replaced by it), so the ``replacement`` option works the same everywhere.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnLasso
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Lime,
    NoiseTunnel,
    Saliency,
)
from captum.attr._core.lime import get_exp_kernel_similarity_function
from torch import nn

from components.evaluation.predict import eval_mode, model_logits
from components.explain.integrated_gradients import resolve_baseline, resolve_targets
from components.explain.posthoc import lfa
from components.perturbation.groups import as_labels, spread_groups
from components.perturbation.removal import remove_features, rows_per_call
from components.tensors import as_float_tensor, model_device

METHODS = (
    "lime",
    "c_lime",
    "kernel_shap",
    "occlusion",
    "gradients",
    "gradient_x_input",
    "smoothgrad",
    "ig",
)
DEFAULT_NUM_SAMPLES = {"lime": 256, "c_lime": 512, "kernel_shap": 512, "smoothgrad": 50, "ig": 32}
DEFAULT_BATCH_SIZE = 1024
ENGINES = ("captum", "lfa")
_REMOVAL = ("replacement", "mean", "noise_std", "blur_sigma")
OPTIONS: dict[str, tuple[str, ...]] = {
    "lime": ("engine", "kernel_width", "alpha", "patch_size", *_REMOVAL),
    "c_lime": ("sigma", "patch_size"),
    "kernel_shap": ("engine", "patch_size", *_REMOVAL),
    "occlusion": ("window", "stride", "patch_size", *_REMOVAL),
    "gradients": (),
    "gradient_x_input": (),
    "smoothgrad": ("sigma",),
    "ig": (),
}


def attribute(
    model: nn.Module,
    x: Any,
    method: str,
    *,
    target: Any = None,
    baseline: Any = None,
    num_samples: int | None = None,
    feature_mask: Any = None,
    batch_size: int | None = None,
    seed: int = 0,
    **options: Any,
) -> np.ndarray:
    """Attributions of each sample's target logit by one of :data:`METHODS`.

    Args:
        model: Forward returns logits or an object with ``.logits`` (a ``ModelOutput``); run
            in eval mode, its mode restored afterwards.
        x: Inputs ``(N, *feature_shape)``, numpy or tensor (moved to the model's device).
        method: One of :data:`METHODS`.
        target: Class explained: an int or one per sample; None: the predicted class.
        baseline: Reference input for removal (lime, kernel_shap, occlusion) and the IG path
            start: scalar, one sample or one per sample; default zeros (the standardised mean).
        num_samples: lime / kernel_shap / c_lime: neighbours per sample; smoothgrad: noisy
            copies; ig: integration steps. Ignored by the deterministic methods. Defaults in
            :data:`DEFAULT_NUM_SAMPLES`.
        feature_mask: Interpretable features for lime, kernel_shap, c_lime and occlusion: an
            integer label per feature, broadcastable to ``feature_shape``, or one such mask per
            sample (e.g. :func:`~components.perturbation.groups.superpixels`). Default
            :func:`~components.perturbation.groups.feature_groups`: one per pixel
            location across channels up to 16x16 images, an 8x8 grid of patches above
            (``patch_size`` option), one per feature for tabular inputs. A group's coefficient
            is spread evenly over its elements (its attributions sum to it).
        batch_size: Rows per model call (default :data:`DEFAULT_BATCH_SIZE`, fewer for large
            inputs: :func:`~components.perturbation.removal.rows_per_call`); on a GPU, tens of
            thousands of rows cut the per-call overhead of the sampling methods.
        seed: Makes the sampling methods deterministic; the global RNG is left untouched.
        **options: Per method (:data:`OPTIONS`): ``engine`` (lime, kernel_shap: ``captum``, or
            ``lfa`` for the batched generic explainer, much faster for many samples);
            ``kernel_width`` (lime's cosine kernel, 1.0) and ``alpha`` (its Lasso, 0.01);
            ``sigma`` (c_lime, smoothgrad noise std; default 15% of the input range);
            ``window`` / ``stride`` (occlusion sliding window over ``feature_shape``; default
            one window per feature group); ``replacement``, ``mean``, ``noise_std``,
            ``blur_sigma`` (how removed features are replaced; see ``remove_features``).

    Returns:
        float32 attributions shaped like ``x``.

    Raises:
        ValueError: Unknown method or option, or a count below 1.
    """
    _check(method, options, num_samples, batch_size)
    device = model_device(model)
    inputs = as_float_tensor(x).to(device)
    with eval_mode(model):
        request = _Request(
            forward=lambda batch: model_logits(model(batch)),
            inputs=inputs,
            targets=resolve_targets(model, inputs, target),
            baseline=resolve_baseline(inputs, baseline),
            num_samples=num_samples or DEFAULT_NUM_SAMPLES.get(method, 0),
            feature_mask=feature_mask,
            batch_size=batch_size or rows_per_call(inputs.shape[1:], DEFAULT_BATCH_SIZE, device),
            seed=seed,
            options=options,
        )
        if method in _DETERMINISTIC:  # seeding costs more than these methods on small batches
            attributions = _RUNNERS[method](request)
        else:
            with _seeded(seed, device):
                attributions = _RUNNERS[method](request)
    if isinstance(attributions, torch.Tensor):
        attributions = attributions.detach().cpu().numpy()
    return np.asarray(attributions, dtype=np.float32).reshape(inputs.shape)


@dataclass
class _Request:
    forward: Callable[[torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    targets: torch.Tensor
    baseline: torch.Tensor
    num_samples: int
    feature_mask: Any
    batch_size: int
    seed: int
    options: dict[str, Any] = field(default_factory=dict)

    def labels(self) -> torch.Tensor:
        """Interpretable feature labels ``(1 or N, *feature_shape)``, 0..G-1 per sample."""
        labels = as_labels(
            self.feature_mask,
            self.inputs.shape[1:],
            self.options.get("patch_size"),
            count=len(self.inputs),
        )
        return labels.to(self.inputs.device)

    def removal(self) -> dict[str, Any]:
        return {key: self.options[key] for key in _REMOVAL if key in self.options}

    def chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for rows in torch.arange(len(self.inputs)).split(self.batch_size):
            # A leaf that requires grad, so captum's gradient methods need not warn and set it.
            x = self.inputs[rows].detach().requires_grad_(True)
            yield x, self.targets[rows], self.baseline[rows]


def _lime(request: _Request) -> torch.Tensor | np.ndarray:
    if _engine(request) == "lfa":
        return _lfa(request, kernel="exponential")
    options = request.options
    similarity = get_exp_kernel_similarity_function("cosine", options.get("kernel_width", 1.0))
    lasso = SkLearnLasso(alpha=options.get("alpha", 0.01))
    explainer = Lime(request.forward, interpretable_model=lasso, similarity_func=similarity)
    return _captum_sampling(explainer, request)


def _kernel_shap(request: _Request) -> torch.Tensor | np.ndarray:
    if _engine(request) == "lfa":
        return _lfa(request, kernel="shapley")
    return _captum_sampling(KernelShap(request.forward), request)


def _captum_sampling(explainer: Lime, request: _Request) -> torch.Tensor:
    """captum's LIME / KernelSHAP, removing features through ``remove_features``.

    captum returns one coefficient per group; it is spread over the group's elements here, as
    the batched engine does (a group's attributions sum to its coefficient). captum's own
    mapping to input shape costs one full-size pass per group: 0.6 s per sample on 224x224.
    """
    generator = torch.Generator().manual_seed(request.seed)
    explainer.from_interp_rep_transform = _removal_transform(request.removal(), generator)
    samples = request.num_samples
    labels = request.labels()
    with warnings.catch_warnings():
        # captum warns that it fits one surrogate per sample: that is what LIME asks for.
        warnings.filterwarnings("ignore", message="You are providing multiple inputs")
        coefficients = explainer.attribute(
            request.inputs,
            baselines=request.baseline,
            target=request.targets,
            feature_mask=labels,
            n_samples=samples,
            perturbations_per_eval=max(1, min(samples, request.batch_size)),
            return_input_shape=False,
        )
    return spread_groups(coefficients.reshape(len(request.inputs), -1), labels)


def _removal_transform(removal: dict[str, Any], generator: torch.Generator) -> Callable:
    """captum's interpretable-to-input transform, through the shared removal operator."""

    def transform(sample: torch.Tensor, original: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        keep = sample[0][kwargs["feature_mask"]].to(original.dtype)
        return remove_features(
            original, 1 - keep, baseline=kwargs["baselines"], generator=generator, **removal
        )

    return transform


def _lfa(request: _Request, *, kernel: str) -> np.ndarray:
    """LIME / KernelSHAP from the batched generic explainer (binary neighbourhood)."""
    return lfa.local_explanation(
        request.forward,
        request.inputs,
        neighbourhood="binary",
        loss="squared",
        kernel=kernel,
        num_samples=request.num_samples,
        target=request.targets,
        feature_mask=request.labels(),
        kernel_width=request.options.get("kernel_width"),
        baseline=request.baseline,
        removal=request.removal(),
        batch_size=request.batch_size,
        seed=request.seed,
    )


def _c_lime(request: _Request) -> np.ndarray:
    return lfa.c_lime(
        request.forward,
        request.inputs,
        target=request.targets,
        num_samples=request.num_samples,
        sigma=request.options.get("sigma"),
        feature_mask=request.labels(),
        batch_size=request.batch_size,
        seed=request.seed,
    )


def _occlusion(request: _Request) -> np.ndarray:
    window = request.options.get("window")
    shape = request.inputs.shape[1:]
    windows = (
        None
        if window is None
        else lfa.sliding_windows(shape, window, request.options.get("stride"))
    )
    return lfa.occlusion(
        request.forward,
        request.inputs,
        target=request.targets,
        windows=windows,
        feature_mask=request.labels(),
        baseline=request.baseline,
        removal=request.removal(),
        batch_size=request.batch_size,
        seed=request.seed,
    )


def _gradients(request: _Request) -> torch.Tensor:
    explainer = Saliency(request.forward)
    return torch.cat([explainer.attribute(x, target=t, abs=False) for x, t, _ in request.chunks()])


def _gradient_x_input(request: _Request) -> torch.Tensor:
    explainer = InputXGradient(request.forward)
    return torch.cat([explainer.attribute(x, target=t) for x, t, _ in request.chunks()])


def _smoothgrad(request: _Request) -> torch.Tensor:
    sigma = request.options.get("sigma")
    sigma = lfa.default_sigma(request.inputs) if sigma is None else float(sigma)
    explainer = NoiseTunnel(Saliency(request.forward))
    pieces = []
    for x, t, _ in request.chunks():
        per_call = max(1, request.batch_size // len(x))
        pieces.append(
            explainer.attribute(
                x,
                nt_type="smoothgrad",
                nt_samples=request.num_samples,
                nt_samples_batch_size=per_call,
                stdevs=sigma,
                target=t,
                abs=False,
            )
        )
    return torch.cat(pieces)


def _ig(request: _Request) -> torch.Tensor:
    explainer = IntegratedGradients(request.forward)
    return torch.cat(
        [
            explainer.attribute(
                x,
                baselines=b,
                target=t,
                n_steps=request.num_samples,
                internal_batch_size=request.batch_size,
            )
            for x, t, b in request.chunks()
        ]
    )


_RUNNERS: dict[str, Callable[[_Request], torch.Tensor | np.ndarray]] = {
    "lime": _lime,
    "c_lime": _c_lime,
    "kernel_shap": _kernel_shap,
    "occlusion": _occlusion,
    "gradients": _gradients,
    "gradient_x_input": _gradient_x_input,
    "smoothgrad": _smoothgrad,
    "ig": _ig,
}


_DETERMINISTIC = frozenset({"gradients", "gradient_x_input", "ig", "occlusion"})


def _check(method: str, options: dict[str, Any], num_samples, batch_size) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {METHODS}")
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    unknown = sorted(set(options) - set(OPTIONS[method]))
    if unknown:
        raise ValueError(f"{method} takes no option(s) {unknown}; it takes {OPTIONS[method]}")


def _engine(request: _Request) -> str:
    engine = request.options.get("engine", "captum")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return engine


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG (which captum samples from) and restore it afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
